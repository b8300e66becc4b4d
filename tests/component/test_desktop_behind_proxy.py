"""The desktop's login limits behind a reverse proxy (``desktop_trusted_proxies``).

Without it every client behind a proxy has the proxy's address, so 20 failed logins from
anyone stop every login through that proxy for the window (the per-address ceiling). With
the proxy trusted, X-Forwarded-For names the client; a client cannot use the header to
pass as someone else unless the request comes from a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections import Counter

from ivr_engine.desktop import DesktopConfig
from ivr_engine.desktop.routes_auth import forwarded_client
from ivr_engine.telephony.peers import parse_networks
from tests.component.test_desktop_app import PASSWORD
from tests.component.test_desktop_login_security import Desk, open_desk

PROXY = parse_networks(["127.0.0.1"])


async def _login(desk: Desk, agent_id: str, password: str, client: str) -> int:
    body = {"agent_id": agent_id, "password": password}
    headers = {"X-Forwarded-For": client}
    async with desk.client.post("/desktop/login", json=body, headers=headers) as response:
        await response.read()
        return response.status


async def test_guessing_through_a_trusted_proxy_does_not_stop_other_clients() -> None:
    config = DesktopConfig(secure_cookie=False, trusted_proxies=PROXY)
    async with open_desk(config) as desk:
        statuses = [await _login(desk, f"nobody-{i}", "guess", "203.0.113.7") for i in range(25)]
        assert Counter(statuses) == {401: 20, 429: 5}  # that client is stopped ...
        assert await _login(desk, "a200", PASSWORD, "198.51.100.9") == 200  # ... nobody else


async def test_without_trusting_the_proxy_the_header_is_ignored() -> None:
    async with open_desk(DesktopConfig(secure_cookie=False)) as desk:
        statuses = [await _login(desk, f"nobody-{i}", "guess", f"203.0.113.{i}") for i in range(21)]
        assert Counter(statuses) == {401: 20, 429: 1}  # one address: the proxy's
        assert await _login(desk, "a200", PASSWORD, "198.51.100.9") == 429


def test_the_client_is_the_nearest_untrusted_hop() -> None:
    def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(text)

    proxies = parse_networks(["10.0.0.0/8"])
    peer = ip("10.0.0.2")
    assert forwarded_client(peer, ["198.51.100.9"], proxies) == ip("198.51.100.9")
    # the client wrote its own header first: only what the trusted proxies appended counts
    assert forwarded_client(peer, ["1.2.3.4, 198.51.100.9, 10.0.0.3"], proxies) == ip(
        "198.51.100.9"
    )
    assert forwarded_client(peer, ["1.2.3.4", "198.51.100.9"], proxies) == ip("198.51.100.9")
    assert forwarded_client(ip("192.0.2.1"), ["198.51.100.9"], proxies) == ip("192.0.2.1")
    assert forwarded_client(peer, ["not-an-ip"], proxies) == peer
    assert forwarded_client(peer, [], proxies) == peer
    assert forwarded_client(peer, ["::ffff:198.51.100.9"], proxies) == ip("198.51.100.9")
