"""Several PostgreSQL servers in one URL (libpq's multi-host form): parsing and checks. Pure.

Accepted, as libpq and SQLAlchemy write them (a host without a port gets 5432):

* ``postgresql://USER@HOST1:5432,HOST2:5432/DB`` (``[IPV6]:PORT`` entries too)
* ``postgresql://USER@/DB?host=HOST1:5432&host=HOST2:5432`` (SQLAlchemy's form)
* ``postgresql://USER@/DB?host=HOST1,HOST2&port=5432,5433`` (libpq's keyword form)

``target_session_attrs`` picks the server: ``read-write`` (the default when several servers
are listed: every call writes, and a standby refuses writes), ``primary`` or ``any`` (the
first server that answers). ``read-only``, ``standby`` and ``prefer-standby`` are refused:
the engine could not write its calls there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PORT = 5432
SEVERAL_SERVERS_ATTRS = "read-write"
WRITABLE_ATTRS = ("read-write", "primary", "any")
NOT_WRITABLE_ATTRS = ("read-only", "standby", "prefer-standby")
FORM = "list them as postgresql://USER@HOST1:5432,HOST2:5432/DB"
Query = tuple[tuple[str, str], ...]
Entry = tuple[str, int | None]

_ENTRY = re.compile(
    r"\[(?P<v6>[^\[\]]+)\](?::(?P<v6port>.*))?|(?P<name>[^\[\]:]+)(?::(?P<port>.*))?", re.S
)


class HostListError(ValueError):
    """A malformed list of servers: the message names the entry and the form to use."""


@dataclass(frozen=True, slots=True)
class PgServer:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def split_host_list(spec: str) -> tuple[Entry, ...]:
    """``h1:5432,[::1]:5433,h3`` → ``(("h1", 5432), ("::1", 5433), ("h3", None))``."""
    if "@" in spec:  # what follows a raw "@" in the password: never quoted
        raise HostListError("a raw '@' in the password must be percent-encoded as %40")
    items = spec.split(",")
    return tuple(_entry(item, index, len(items)) for index, item in enumerate(items, 1))


def _entry(item: str, index: int, count: int) -> Entry:
    where = f"host {index} of {count}"
    if not item:
        raise HostListError(f"{where} is empty: {FORM}")
    match = _ENTRY.fullmatch(item)
    if match is None:
        raise HostListError(f"{where} ({item!r}) is not HOST, HOST:PORT or [IPV6]:PORT: {FORM}")
    if match["v6"] is not None:
        return match["v6"], _port(match["v6port"], where)
    if "/" in match["name"]:
        raise HostListError(f"{where}: a socket directory cannot be one of several servers")
    return match["name"], _port(match["port"], where)


def _port(text: str | None, where: str) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise HostListError(f"{where}: the port {text!r} is not a number from 1 to 65535")
    return int(text)


def servers_of(hosts: tuple[Entry, ...], query: Query) -> tuple[tuple[PgServer, ...], Query]:
    """The servers a URL lists and its query without ``host``/``port``; ``()`` and the query
    as it is when the URL names one server or none (the driver reads that URL as it is).
    ``hosts``: the host or hosts written before the database (``split_host_list``)."""
    query_hosts = [value for key, value in query if key == "host"]
    query_ports = [value for key, value in query if key == "port"]
    entries = split_host_list(",".join(query_hosts)) if query_hosts else hosts
    if hosts and query_hosts and len(hosts) + len(entries) > 2:
        raise HostListError(
            "the servers are listed twice, in the URL and as ?host=: list them one way"
        )
    if len(entries) < 2:
        return (), query
    ports = _ports(query_ports, entries)
    servers = tuple(PgServer(host, port) for (host, _), port in zip(entries, ports, strict=True))
    return servers, tuple((key, value) for key, value in query if key not in ("host", "port"))


def _ports(query_ports: list[str], entries: tuple[Entry, ...]) -> list[int]:
    if not query_ports:
        return [port or DEFAULT_PORT for _, port in entries]
    if any(port is not None for _, port in entries):
        raise HostListError(
            "ports given both with the hosts (HOST:PORT) and as ?port=: give them one way"
        )
    texts = ",".join(query_ports).split(",")
    ports = [_port(text, f"port {index} of {len(texts)}") for index, text in enumerate(texts, 1)]
    if len(ports) == 1:
        return [ports[0] or DEFAULT_PORT] * len(entries)
    if len(ports) != len(entries):
        raise HostListError(f"{len(entries)} hosts but {len(ports)} ports in ?port=")
    return [port or DEFAULT_PORT for port in ports]


def session_attrs(query: Query, *, several: bool) -> str | None:
    """The URL's ``target_session_attrs``, checked; ``read-write`` if it lists several
    servers and says none; ``None`` (the driver's default) for one server."""
    values = [value for key, value in query if key == "target_session_attrs"]
    if len(values) > 1:
        raise HostListError(f"target_session_attrs is given {len(values)} times: give it once")
    if not values:
        return SEVERAL_SERVERS_ATTRS if several else None
    value = values[0]
    if value in NOT_WRITABLE_ATTRS:
        raise HostListError(
            f"target_session_attrs={value}: the engine writes every call, and that server "
            f"would refuse the writes: use read-write (the default for several servers), "
            "primary or any"
        )
    if value not in WRITABLE_ATTRS:
        raise HostListError(
            f"target_session_attrs={value!r} is not one of {', '.join(WRITABLE_ATTRS)}"
        )
    return value
