"""AmiClient lifecycle against the fake AMI peer: login, re-login after drops and restarts,
back-off growth, ping-timeout detection, hostile input, clean close."""

from __future__ import annotations

import asyncio
import socket

import pytest

from ivr_engine.telephony.ami import (
    AmiClient,
    AmiClosed,
    AmiConnectionLost,
    AmiConnectTimeout,
    AmiLimits,
    AmiNotConnected,
    AmiPingTimeout,
    AmiProtocolError,
    AmiState,
    LoginFailed,
)
from tests.component.test_ami_fake_peer import (
    FAST_LIMITS,
    WAIT_S,
    Action,
    FakeAmi,
    PeerSession,
    RecordingBackoff,
    connected_client,
    make_client,
    next_event,
)


async def test_logs_in_and_reports_banner_version(peer: FakeAmi) -> None:
    client = make_client(peer)
    booted = client.subscribe("FullyBooted")
    assert client.state is AmiState.IDLE
    await client.start()
    try:
        await client.wait_connected(WAIT_S)
        assert client.state is AmiState.CONNECTED
        assert client.version == "11.0.0"
        assert client.logins == 1
        assert (await next_event(booted)).get("Status") == "Fully Booted"
        login = peer.login_attempts[0]
        assert (login.get("Username"), login.get("Secret"), login.get("Events")) == (
            "ivr",
            "s3cret",
            "on",
        )
    finally:
        await client.close()
    assert client.state is AmiState.CLOSED


async def test_events_option_goes_into_the_login(peer: FakeAmi) -> None:
    async with connected_client(peer, events="off"):
        assert peer.login_attempts[0].get("Events") == "off"


async def test_refused_login_is_reported_and_retried_only_at_the_capped_delay(
    peer: FakeAmi,
) -> None:
    peer.secret = "the-real-secret"  # the client still sends "s3cret"
    backoff = RecordingBackoff(base_s=0.01, cap_s=0.05)
    client = AmiClient("127.0.0.1", peer.port, "ivr", "s3cret", backoff=backoff, limits=FAST_LIMITS)
    booted = client.subscribe("FullyBooted")
    await client.start()
    try:
        with pytest.raises(LoginFailed, match="Authentication failed"):
            await client.wait_connected(WAIT_S)
        assert client.state is AmiState.LOGIN_FAILED
        await backoff.wait_for(2)
        # Never the short exponential delays: straight to the cap, every time.
        assert backoff.delays[:2] == [("cap", 0.05), ("cap", 0.05)]
        assert isinstance(client.last_error, LoginFailed)
        assert "'ivr'" in str(client.last_error)
        # Someone fixes the secret: the next retry logs in.
        peer.secret = "s3cret"
        await peer.next_login()
        await next_event(booted)  # after the Login response: the client is connected
        assert client.state is AmiState.CONNECTED
        assert backoff.failures == 0
    finally:
        await client.close()


async def test_a_login_refused_while_asterisk_shuts_down_is_retried_not_reported(
    peer: FakeAmi,
) -> None:
    """Seen against Asterisk 22 during ``core stop now``: the manager still accepts the
    connection and answers Login with ``Asterisk is shutting down``. That is no credentials
    problem: the client backs off as for a dropped connection and logs in once it can."""
    peer.refuse_logins_with = "Asterisk is shutting down"
    backoff = RecordingBackoff(base_s=0.01, cap_s=0.05)
    client = AmiClient("127.0.0.1", peer.port, "ivr", "s3cret", backoff=backoff, limits=FAST_LIMITS)
    await client.start()
    try:
        await backoff.wait_for(2)
        assert client.state is AmiState.CONNECTING  # not LOGIN_FAILED
        assert not isinstance(client.last_error, LoginFailed)
        assert "shutting down" in str(client.last_error)
        assert all(kind != "cap" for kind, _ in backoff.delays[:2])
        peer.refuse_logins_with = None  # Asterisk is back
        await client.wait_connected(WAIT_S)
        assert client.state is AmiState.CONNECTED
    finally:
        await client.close()


async def test_drop_mid_message_reconnects_logs_in_again_and_fails_waiting_action(
    peer: FakeAmi,
) -> None:
    answered = asyncio.Event()

    async def never_answer(session: PeerSession, action: Action) -> None:
        answered.set()

    peer.handlers["originate"] = never_answer
    async with connected_client(peer) as client:
        first = await peer.next_login()
        channels = client.subscribe("Newchannel")
        booted = client.subscribe("FullyBooted")
        originate = asyncio.create_task(client.action("Originate", Channel="PJSIP/agent-1"))
        async with asyncio.timeout(WAIT_S):
            await answered.wait()
        await first.send(b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/half")
        first.drop()

        with pytest.raises(AmiConnectionLost):
            await originate
        second = await peer.next_login()
        await next_event(booted)
        assert client.state is AmiState.CONNECTED
        assert client.logins == 2
        assert "middle of a message" in str(client.last_error)
        # The half message was never delivered; the next whole one is.
        await second.event("Newchannel", ("Channel", "PJSIP/whole"))
        assert (await next_event(channels)).get("Channel") == "PJSIP/whole"


async def test_back_off_grows_while_asterisk_is_down_then_reconnects(peer: FakeAmi) -> None:
    backoff = RecordingBackoff(base_s=0.01, cap_s=0.08)
    async with connected_client(peer, backoff=backoff) as client:
        await peer.next_login()
        await peer.stop()  # Asterisk goes down: connection dropped, then refused
        await backoff.wait_for(6)
        delays = [delay for _, delay in backoff.delays[:6]]
        assert delays == [0.01, 0.02, 0.04, 0.08, 0.08, 0.08]
        assert client.state is AmiState.CONNECTING
        with pytest.raises(AmiNotConnected):
            await client.action("Ping")

        await peer.start()  # same port
        await peer.next_login()
        await client.wait_connected(WAIT_S)
        assert client.logins == 2
        assert backoff.failures == 0  # reset by the successful login


async def test_silent_peer_is_detected_by_ping_timeout(peer: FakeAmi) -> None:
    async with connected_client(peer, ping_interval_s=0.05, ping_timeout_s=0.2) as client:
        first = await peer.next_login()
        await first.next_action("Ping")  # answered: the connection is healthy
        await first.next_action("Ping")
        assert client.logins == 1
        first.silent = True  # a hung Asterisk: TCP up, nothing answered
        await first.wait_closed()  # the client dropped it
        await peer.next_login()
        assert isinstance(client.last_error, AmiPingTimeout)
        await client.wait_connected(WAIT_S)
        assert client.logins == 2


async def _wait_for_relogin(peer: FakeAmi, client: AmiClient) -> None:
    await peer.next_login()
    await client.wait_connected(WAIT_S)


async def test_line_without_colon_is_a_protocol_error_and_reconnects(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        first = await peer.next_login()
        await first.send(b"\x00\xffthis is not AMI\r\n\r\n")
        await first.wait_closed()
        await _wait_for_relogin(peer, client)
        assert isinstance(client.last_error, AmiProtocolError)


async def test_non_utf8_bytes_become_replacement_characters(peer: FakeAmi) -> None:
    async with connected_client(peer) as client:
        session = await peer.next_login()
        channels = client.subscribe("Newchannel")
        await session.send(b"Event: Newchannel\r\nCallerIDName: Jos\xe9 \xff\xfe\r\n\r\n")
        event = await next_event(channels)
        assert event.get("CallerIDName") == "Jos\ufffd \ufffd\ufffd"
        assert client.state is AmiState.CONNECTED and client.logins == 1


async def test_oversized_line_is_a_protocol_error_not_a_memory_blowup(peer: FakeAmi) -> None:
    limits = AmiLimits(max_line_bytes=4096, connect_timeout_s=2, login_timeout_s=2)
    async with connected_client(peer, limits=limits) as client:
        first = await peer.next_login()
        # 8 MB without a line end; the client must give up after ~4 KB, not buffer it all.
        first.writer.write(b"Event: Flood\r\nData: " + b"A" * 8_000_000)
        await first.wait_closed()
        await _wait_for_relogin(peer, client)
        assert isinstance(client.last_error, AmiProtocolError)
        assert "longer than 4096 bytes" in str(client.last_error)


async def test_oversized_message_is_a_protocol_error(peer: FakeAmi) -> None:
    limits = AmiLimits(max_message_bytes=2048, connect_timeout_s=2, login_timeout_s=2)
    async with connected_client(peer, limits=limits) as client:
        first = await peer.next_login()
        lines = b"".join(b"ChanVariable: V%d=%s\r\n" % (n, b"x" * 40) for n in range(100))
        await first.send(b"Event: Newchannel\r\n" + lines + b"\r\n")
        await first.wait_closed()
        await _wait_for_relogin(peer, client)
        assert "larger than 2048 bytes" in str(client.last_error)


async def test_peer_that_is_not_asterisk_is_a_protocol_error() -> None:
    async def ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(ssh, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backoff = RecordingBackoff()
    client = AmiClient("127.0.0.1", port, "u", "p", backoff=backoff, limits=FAST_LIMITS)
    try:
        await client.start()
        await backoff.wait_for(1)
        assert isinstance(client.last_error, AmiProtocolError)
        assert "banner" in str(client.last_error)
        assert client.state is AmiState.CONNECTING
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_close_logs_off_and_ends_everything(peer: FakeAmi) -> None:
    client = make_client(peer)
    await client.start()
    await client.wait_connected(WAIT_S)
    session = await peer.next_login()
    events = client.subscribe()
    await client.close()
    assert (await session.next_action("Logoff")).name == "Logoff"
    await session.wait_closed()
    assert client.state is AmiState.CLOSED
    with pytest.raises(AmiClosed):
        await client.action("Ping")
    with pytest.raises(AmiClosed):
        await client.wait_connected(1)
    with pytest.raises(AmiClosed):
        await client.start()
    remaining = [event.name async for event in events]  # ends instead of waiting forever
    assert remaining in ([], ["FullyBooted"])
    await client.close()  # idempotent


async def test_close_while_backing_off_returns_at_once(peer: FakeAmi) -> None:
    backoff = RecordingBackoff(base_s=30.0, cap_s=60.0)
    async with connected_client(peer, backoff=backoff) as client:
        await peer.next_login()
        await peer.stop()
        await backoff.wait_for(1)  # now sleeping 30 s before the next attempt
        async with asyncio.timeout(1.0):
            await client.close()
        assert client.state is AmiState.CLOSED


async def test_close_while_connecting_to_a_mute_server_returns_at_once() -> None:
    accepted = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # never sends the banner
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limits = AmiLimits(connect_timeout_s=30.0)
    client = AmiClient("127.0.0.1", port, "u", "p", limits=limits, ping_interval_s=None)
    try:
        await client.start()
        async with asyncio.timeout(WAIT_S):
            await accepted.wait()
        assert client.state is AmiState.CONNECTING
        async with asyncio.timeout(1.0):
            await client.close()
        assert client.state is AmiState.CLOSED
    finally:
        server.close()
        await server.wait_closed()


async def test_not_connected_is_an_error_not_a_wait() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        client = AmiClient("127.0.0.1", port, "u", "p", backoff=RecordingBackoff())
        with pytest.raises(AmiNotConnected, match="not started"):
            await client.wait_connected(0.1)
        await client.start()
        try:
            with pytest.raises(AmiNotConnected):
                await client.action("Ping")
            with pytest.raises(AmiConnectTimeout, match=r"cannot connect to AMI"):
                await client.wait_connected(0.2)
        finally:
            await client.close()
