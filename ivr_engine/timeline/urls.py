"""User-facing database URLs → raw-driver parameters and SQLAlchemy async URLs.

Accepted (what users configure):

* ``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db`` (embedded default)
* ``postgresql://user:password@host:port/db`` (``postgres://`` is an alias)
* several servers, libpq's way: ``postgresql://user@h1:5432,h2:5432/db`` or
  ``?host=h1:5432&host=h2:5432`` (``pg_servers``: the engine connects to the first one that
  takes a read-write session, ``pg_connect``)

The async forms ``sqlite+aiosqlite://`` and ``postgresql+asyncpg://`` are accepted too.

Parsed here with SQLAlchemy's own grammar (``make_url``: same pattern, same unquoting, same
rendering), but without importing SQLAlchemy: the classic per-call AGI script parses the
URL on every call and must not pay SQLAlchemy's import (bench/results.md). The SQLAlchemy
``URL`` object is built only when ``async_url`` is asked for (engines, migrations).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, quote, quote_plus, unquote

from ivr_engine.timeline.errors import UnsupportedDatabaseUrl
from ivr_engine.timeline.pg_servers import (
    Entry,
    HostListError,
    PgServer,
    servers_of,
    session_attrs,
    split_host_list,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

Dialect = Literal["sqlite", "postgresql"]

_HINT = "use sqlite:///PATH/TO/FILE.db or postgresql://USER@HOST:PORT/DB"
_SQLITE = {"sqlite", "sqlite+aiosqlite"}
_POSTGRES = {"postgresql", "postgres", "postgresql+asyncpg"}
# Query keys whose values are secrets (libpq, asyncpg; Redis URLs take ?password= too).
SECRET_QUERY_KEYS = frozenset({"password", "sslpassword", "passfile"})
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|sslpassword|passfile)=)[^&#]*")
# A raw one of these in a URL's password ends its userinfo early: what follows is read as the
# port (or a bracketed host), and the parsers' messages quote it. Said in place of them.
RAW_IN_PASSWORD = "a '/', '?', '#', '[' or ']' in the password must be percent-encoded"

# sqlalchemy.engine.url._parse_url's pattern (SQLAlchemy 2.x), unchanged.
_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)


@dataclass(frozen=True, slots=True)
class UrlParts:
    """A database URL's parts, as ``sqlalchemy.engine.URL`` holds them (query in order)."""

    drivername: str
    username: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: tuple[tuple[str, str], ...] = ()
    hosts: tuple[Entry, ...] = ()  # several servers in the URL (h1:5432,h2): host is None

    def render(self, *, hide_password: bool = True) -> str:
        """``URL.render_as_string``: the same text, character for character. Hiding, every
        secret is ``***``: the password, the ``password``/``sslpassword``/``passfile`` query
        values (asyncpg and libpq take them there), and the part of a password after a raw
        ``@`` (which the grammar reads as the start of the host). A raw ``@`` followed by a
        raw ``/``, ``?`` or ``#`` is seen only in the text: ``redact`` handles it."""
        host = self.host
        text = self.drivername + "://"
        if self.username is not None:
            text += quote(self.username, safe=" +")
            if self.password is not None:
                password = "***" if hide_password else quote(self.password, safe=" +")
                text += ":" + password
            text += "@"
        if hide_password and host is not None and "@" in host:
            host = host.rpartition("@")[2]
            text += "" if self.username is not None else "***@"
        if host is not None:
            text += f"[{host}]" if ":" in host else host
        if self.port is not None:
            text += f":{self.port}"
        text += ",".join(_host_entry(name, port) for name, port in self.hosts)
        if self.database is not None:
            text += "/" + quote(self.database, safe=" +/")
        if self.query:
            pairs = sorted(self.query, key=lambda kv: kv[0])  # stable: repeated keys keep order
            text += "?" + "&".join(_query_pair(k, v, hide_password) for k, v in pairs)
        return text

    def to_sqlalchemy(self) -> URL:
        from sqlalchemy.engine import URL  # only engines and migrations need it

        query: dict[str, str | list[str]] = {}
        hosts = tuple(("host", _host_entry(name, port)) for name, port in self.hosts)
        for key, value in hosts + self.query:
            known = query.get(key)
            query[key] = value if known is None else [*_as_list(known), value]
        return URL.create(
            self.drivername,
            username=self.username,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
            query=query,
        )


def _query_pair(key: str, value: str, hide: bool) -> str:
    secret = hide and key.lower() in SECRET_QUERY_KEYS
    return f"{quote_plus(key)}={'***' if secret else quote_plus(value)}"


def _host_entry(name: str, port: int | None) -> str:
    host = f"[{name}]" if ":" in name else name
    return host if port is None else f"{host}:{port}"


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def split_url(database_url: str) -> UrlParts:
    """``make_url``'s parse; ``ValueError`` for text that is not a URL."""
    if not database_url.isascii():
        try:
            database_url.encode()
        except UnicodeEncodeError:  # a lone surrogate: no driver could be given it
            raise ValueError("not a database URL (text that is not valid UTF-8)") from None
    match = _URL.match(database_url)
    if match is None:
        raise ValueError("not a database URL")
    hosts, rest = _host_list(database_url, match)
    if hosts:  # the database and query, as read after a one-host stand-in for the list
        match = _URL.match(rest)
        assert match is not None  # the same text with one host instead of the list
    parts = match.groupdict()
    query = tuple(parse_qsl(parts["query"])) if parts["query"] is not None else ()
    username, password, database = (
        unquote(parts[key]) if parts[key] is not None else None
        for key in ("username", "password", "database")
    )
    return UrlParts(
        parts["name"],
        username=username,
        password=password,
        host=None if hosts else parts["ipv4host"] or parts["ipv6host"],
        port=int(parts["port"]) if parts["port"] and not hosts else None,
        database=database,
        query=query,
        hosts=hosts,
    )


def _host_list(database_url: str, match: re.Match[str]) -> tuple[tuple[Entry, ...], str]:
    """The URL's servers when it lists several (``h1:5432,h2``), else ``()``, and the URL
    with a one-host stand-in for the list; ``HostListError`` for a malformed list."""
    if match["username"] is None:
        start = match.end("name") + len("://")
    else:  # just after the "@" that ends the userinfo
        start = match.end("password" if match["password"] is not None else "username") + 1
    ends = [i for i in (database_url.find("/", start), database_url.find("?", start)) if i >= 0]
    end = min(ends, default=len(database_url))
    spec = database_url[start:end]
    if "," not in spec:
        return (), database_url
    return split_host_list(spec), f"{database_url[:start]}h{database_url[end:]}"


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """One parsed database URL; ``sqlite_path`` or ``postgres_dsn`` is set, per dialect."""

    dialect: Dialect
    async_parts: UrlParts  # sqlite+aiosqlite / postgresql+asyncpg
    sqlite_path: Path | None = None  # for aiosqlite.connect / sqlite3.connect
    postgres_dsn: str | None = None  # for asyncpg.connect(dsn)
    # several servers (pg_connect tries them in order), and the session they must take
    servers: tuple[PgServer, ...] = ()
    session_attrs: str | None = None

    @property
    def async_url(self) -> URL:
        """For ``create_async_engine`` (imports SQLAlchemy)."""
        return self.async_parts.to_sqlalchemy()

    @property
    def async_url_string(self) -> str:
        """The async URL as text, password included (never log this)."""
        return self.async_parts.render(hide_password=False)


def redact(database_url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs). Any URL of
    this form: database URLs, and Redis ones (``redis://:PASSWORD@HOST:6379/0``,
    ``unix:///PATH?password=...``).

    A password with a raw ``@`` followed by a raw ``/``, ``?`` or ``#`` reads, by the
    grammar, as a short password, then a host, then a database, query or fragment that
    hold the rest of it: so when the userinfo has a password (``user:...@``) and another
    ``@`` follows, all up to the last ``@`` is hidden. A valid URL whose database or query
    holds an ``@`` then shows less than it could (the part after its last ``@``): the
    safe reading."""
    scheme, sep, rest = database_url.partition("://")
    userinfo, at, after = rest.partition("@")
    if sep and at and ":" in userinfo and "@" in after:
        user = userinfo.partition(":")[0]
        return _SECRET_QUERY.sub(r"\1***", f"{scheme}://{user}:***@{after.rpartition('@')[2]}")
    try:
        return split_url(database_url).render(hide_password=True)
    except ValueError:
        # not a URL of this grammar (no "scheme://", or a "port" that is not a number: what
        # follows a raw "/" in a password when no "@" follows): which part is the password is
        # unknown, so all is hidden but the scheme and what follows the last "@"
        head, at, host = database_url.rpartition("@")
        scheme, sep, _ = (head if at else database_url).partition("://")
        if at:
            text = f"{scheme}://***@{host}" if sep else f"***@{host}"
        else:
            text = f"{scheme}://***" if sep else database_url
        return _SECRET_QUERY.sub(r"\1***", text)


def parse_database_url(database_url: str) -> DatabaseUrl:
    """Parse and check a configured URL; ``UnsupportedDatabaseUrl`` says what to use."""
    try:
        url = split_url(database_url)
    except HostListError as exc:
        raise UnsupportedDatabaseUrl(f"database_url: {redact(database_url)!r}: {exc}") from None
    except ValueError as exc:
        raise UnsupportedDatabaseUrl(
            f"database_url: cannot parse {redact(database_url)!r}: {_HINT}"
        ) from exc
    scheme = url.drivername
    if scheme in _SQLITE:
        return _sqlite(url, redact(database_url))
    if scheme in _POSTGRES:
        return _postgres(url, redact(database_url))
    raise UnsupportedDatabaseUrl(
        f"database_url: unsupported scheme {scheme!r} in {redact(database_url)!r}: {_HINT}"
    )


def _sqlite(url: UrlParts, shown: str) -> DatabaseUrl:
    database = url.database or ""
    if url.host or url.username or url.port or url.hosts:
        raise UnsupportedDatabaseUrl(
            f"database_url: {shown!r}: a SQLite URL has no host; use three slashes, "
            "sqlite:///relative.db, or four for an absolute path, sqlite:////var/lib/x.db"
        )
    if database in ("", ":memory:") or database.startswith("file:") or url.query:
        raise UnsupportedDatabaseUrl(
            f"database_url: {shown!r}: SQLite needs a file path (in-memory databases and "
            f"URI options are not supported): {_HINT}"
        )
    try:
        path = Path(database).expanduser().absolute()
    except RuntimeError as exc:  # "~name/..." for a user this machine does not have
        raise UnsupportedDatabaseUrl(f"database_url: {shown!r}: {exc}") from None
    return DatabaseUrl("sqlite", UrlParts("sqlite+aiosqlite", database=str(path)), sqlite_path=path)


def _postgres(url: UrlParts, shown: str) -> DatabaseUrl:
    if not url.database:
        raise UnsupportedDatabaseUrl(
            f"database_url: {shown!r}: name the database: postgresql://USER@HOST:PORT/DB"
        )
    try:
        named = url.hosts or (((url.host, url.port),) if url.host else ())
        servers, query = servers_of(named, url.query)
        attrs = session_attrs(url.query, several=bool(servers))
    except HostListError as exc:
        raise UnsupportedDatabaseUrl(f"database_url: {shown!r}: {exc}") from None
    if not servers:
        dsn = replace(url, drivername="postgresql").render(hide_password=False)
        async_parts = replace(url, drivername="postgresql+asyncpg")
        return DatabaseUrl("postgresql", async_parts, postgres_dsn=dsn, session_attrs=attrs)
    # one spelling for every path: the servers in the DSN, the session asked for in its query
    assert attrs is not None
    query = (
        *((k, v) for k, v in query if k != "target_session_attrs"),
        ("target_session_attrs", attrs),
    )
    listed = tuple((server.host, server.port) for server in servers)
    dsn_parts = replace(url, drivername="postgresql", hosts=listed, query=query)
    # SQLAlchemy connects through pg_connect (engine.py): its URL names no server
    async_parts = replace(url, drivername="postgresql+asyncpg", hosts=(), query=query)
    return DatabaseUrl(
        "postgresql",
        async_parts,
        postgres_dsn=dsn_parts.render(hide_password=False),
        servers=servers,
        session_attrs=attrs,
    )
