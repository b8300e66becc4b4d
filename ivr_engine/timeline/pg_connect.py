"""One asyncpg connection for a database URL: every PostgreSQL path of the engine opens its
connections here (the per-call lookup, the call writer, the schema check, and SQLAlchemy's
pools through ``async_creator``: the store, migrations, the webhook relay's lease).

A URL with several servers (``pg_servers``) is tried the way libpq does it: in order, each
server with its own ``timeout`` (asyncpg's own list shares one timeout among all servers:
a first server that never answers would use it all up), until one gives a session of the
URL's ``target_session_attrs`` (``read-write`` unless it says otherwise: the first server
that is not a standby). A server that refuses the user, password or database ends the
search (libpq's rule: a typo, not an outage). When none will do: ``NoServerAvailable``, an
``OSError`` (an outage to every caller) naming each server and what it answered.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ivr_engine.timeline.urls import DatabaseUrl

if TYPE_CHECKING:  # PostgreSQL only: SQLite users never import asyncpg
    import asyncpg


class NoServerAvailable(OSError):
    """No server of a multi-server URL took the session; the message says why, server by
    server (never the password: no driver message quotes it)."""


async def connect_postgres(
    url: DatabaseUrl, *, connect_timeout_s: float, **options: Any
) -> asyncpg.Connection:
    """``asyncpg.connect`` for ``url``: ``connect_timeout_s`` per server (``options``: its other
    keywords)."""
    import asyncpg

    assert url.postgres_dsn is not None, "a PostgreSQL URL"
    if not url.servers:
        connection: asyncpg.Connection = await asyncpg.connect(
            url.postgres_dsn, timeout=connect_timeout_s, **options
        )
        return connection
    final = (
        asyncpg.InvalidAuthorizationSpecificationError,  # no such role, no pg_hba entry
        asyncpg.InvalidPasswordError,
        asyncpg.InvalidCatalogNameError,  # no such database
    )
    failures: list[str] = []
    for server in url.servers:
        try:
            connection = await asyncpg.connect(
                url.postgres_dsn,
                host=server.host,
                port=server.port,
                target_session_attrs=url.session_attrs,
                timeout=connect_timeout_s,
                **options,
            )
        except final:
            raise
        except (
            OSError,  # refused, unreachable, no such host name
            TimeoutError,
            asyncpg.PostgresError,  # e.g. "the database system is starting up"
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # TargetServerAttributeNotMatched: a standby
        ) as exc:
            failures.append(f"{server}: {_why(exc)}")
        else:
            return connection
    raise NoServerAvailable(
        f"no PostgreSQL server of {', '.join(map(str, url.servers))} gave a "
        f"{url.session_attrs} session: {'; '.join(failures)}"
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time (TimeoutError)"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def engine_options(
    url: DatabaseUrl, *, connect_timeout_s: float, server_settings: dict[str, str] | None = None
) -> dict[str, Any]:
    """``create_async_engine`` keywords that open connections like the rest of the engine:
    through ``connect_postgres`` for several servers (SQLAlchemy's own multi-host support
    is asyncpg's shared timeout), as before (``connect_args``) for one."""
    options: dict[str, Any] = {}
    if server_settings is not None:
        options["server_settings"] = server_settings
    if not url.servers:
        return {"connect_args": {"timeout": connect_timeout_s, **options}}
    creator: Callable[[], Awaitable[asyncpg.Connection]] = functools.partial(
        connect_postgres, url, connect_timeout_s=connect_timeout_s, **options
    )
    return {"async_creator": creator}
