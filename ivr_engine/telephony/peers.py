"""Which hosts may open a call connection (FastAGI, the ESL outbound socket). Pure.

Neither protocol authenticates its peer: whoever reaches the port can play a caller with
any caller ID, hear what the menu reveals about that customer and write calls to their
timeline. ``pbx_allowlist`` names the PBXs (addresses or networks); a connection from
anywhere else is closed before a byte is read. Empty: any peer (the default, for an engine
on loopback next to its PBX).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.5"``, ``"10.0.0.0/24"``, ``"::1"``; ``ValueError`` naming the bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(_unmapped(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/24)"
            ) from None
    return tuple(networks)


def _unmapped(network: Network) -> Network:
    """``::ffff:10.0.0.5`` as ``10.0.0.5``: peers are compared unmapped (IPv4) as well."""
    address = network.network_address
    ipv4 = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    if ipv4 is not None and network.prefixlen >= 96:
        return ipaddress.ip_network(f"{ipv4}/{network.prefixlen - 96}")
    return network


class PeerAllowlist:
    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._networks = parse_networks(entries)

    @property
    def open_to_all(self) -> bool:
        return not self._networks

    def allows(self, host: str) -> bool:
        """``host`` (a peer's address as the socket gives it) may connect."""
        if not self._networks:
            return True
        try:
            address = ipaddress.ip_address(host.partition("%")[0])  # no IPv6 zone id
        except ValueError:
            return False  # e.g. a Unix socket path: not a PBX address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)
