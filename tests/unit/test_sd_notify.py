"""``sd_notify``: datagrams on a Unix socket the test binds, as systemd's would be."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

from ivr_engine.sd_notify import READY, Notifier, notify_address


def test_states_reach_a_socket_named_by_path(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(10)
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        assert notifier.send(READY)
        notifier.watchdog()
        notifier.close()
        assert [server.recv(100), server.recv(100)] == [b"READY=1", b"WATCHDOG=1"]


def test_an_abstract_socket_is_named_with_at() -> None:
    name = f"ivr-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(10)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.watchdog()
        notifier.close()
        assert server.recv(100) == b"WATCHDOG=1"


def test_without_notify_socket_nothing_is_sent(tmp_path: Path) -> None:
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.send(READY)
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_a_socket_nobody_listens_on_is_no_error(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.enabled and not notifier.send(READY)
