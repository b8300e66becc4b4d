"""pbx_allowlist: which peers may open a FastAGI / ESL connection."""

from __future__ import annotations

import pytest

from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import load_settings
from ivr_engine.telephony.peers import PeerAllowlist


def test_empty_allows_every_peer() -> None:
    assert PeerAllowlist().open_to_all and PeerAllowlist().allows("203.0.113.9")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("10.0.0.5", True),
        ("10.0.1.77", True),
        ("10.0.2.1", False),
        ("::ffff:10.0.1.7", True),  # an IPv4 peer on a dual-stack socket
        ("2001:db8::1", True),
        ("fe80::1%eth0", False),
        ("/run/asterisk.sock", False),
        ("", False),
    ],
)
def test_addresses_and_networks(host: str, allowed: bool) -> None:
    allowlist = PeerAllowlist(["10.0.0.5", "10.0.1.0/24", "2001:db8::/32"])
    assert allowlist.allows(host) is allowed


def test_a_bad_entry_is_refused_at_start_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"pbx_allowlist.*'10\.0\.0\.300' is not an IP"):
        load_settings(environ={"IVR_ENGINE_PBX_ALLOWLIST": "10.0.0.5, 10.0.0.300"})
    settings = load_settings(environ={"IVR_ENGINE_PBX_ALLOWLIST": "10.0.0.5, 10.0.1.0/24"})
    assert settings.pbx_allowlist == ["10.0.0.5", "10.0.1.0/24"]


@pytest.mark.parametrize("entry", ["::ffff:10.0.0.5", "::ffff:10.0.0.0/120"])
def test_an_ipv4_mapped_entry_matches_its_ipv4_peer(entry: str) -> None:
    # peers are compared unmapped (IPv4); the entry used to stay IPv6 and never matched
    allowlist = PeerAllowlist([entry])
    assert allowlist.allows("10.0.0.5") and allowlist.allows("::ffff:10.0.0.5")
    assert not allowlist.allows("10.0.1.5")
