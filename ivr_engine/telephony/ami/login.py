"""Logging in on a fresh AMI connection: the ``Login`` action and the server-side event filter.

``log_in`` sends ``Login`` and raises why Asterisk refused it. ``ServerFilter`` asks Asterisk,
right after a login, to send only the events a client reads: one ``Filter`` action per name
(``MatchCriteria: name(X)``, the exact-name filter of recent Asterisk 20 / 21 releases and
22) makes Asterisk drop every other event of the login's classes before writing it
(``DeviceStateChange``, ``SoftHangupRequest``, ``ContactStatus`` ... would cost the reader
their parsing). It only saves work: subscriptions still filter. The client's lifecycle
around both is ``client.py``.
"""

from __future__ import annotations

import asyncio
import logging

from ivr_engine.telephony.ami.connection import AmiConnection
from ivr_engine.telephony.ami.errors import AmiConnectionLost, LoginFailed

# the client's logger, as before ``login.py`` was split out of ``client.py``
log = logging.getLogger("ivr_engine.telephony.ami.client")
# Asterisk answers a Login with "Asterisk is shutting down" while it stops or restarts: not
# a credentials problem, so the client reconnects with its normal back-off.
_TRANSIENT_REFUSAL = "shutting down"


async def log_in(
    conn: AmiConnection,
    *,
    host: str,
    port: int,
    username: str,
    secret: str,
    events: str,
    timeout_s: float,
) -> None:
    """Send ``Login``. Refused credentials: ``LoginFailed`` with Asterisk's message; refused
    because Asterisk is stopping or restarting: ``AmiConnectionLost``."""
    headers = {"Username": username, "Secret": secret, "Events": events}
    result = await conn.request("Login", headers, timeout_s)
    if not result.response.ok:
        why = result.response.message or result.response.response
        if _TRANSIENT_REFUSAL in why.lower():  # ``core stop``/``restart`` under way
            raise AmiConnectionLost(f"AMI at {host}:{port} refused login: {why}")
        raise LoginFailed(f"AMI login as {username!r} to {host}:{port} refused: {why}")


class ServerFilter:
    """The event names to ask Asterisk for after each login (none: no filter), forgotten
    once Asterisk refuses them. Refused whole (the manager user lacks ``write=system``, an
    older Asterisk), ``install`` warns once and the client reads unfiltered from then on;
    taken only in part (a whitelist missing names would hide events), it forgets them too
    and raises ``AmiConnectionLost``, so the client logs in again without a filter."""

    __slots__ = ("names",)

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    async def install(self, conn: AmiConnection, timeout_s: float, where: str) -> bool:
        """Send the ``Filter`` actions; True if Asterisk took every name (it now filters)."""
        names = self.names
        lists = await asyncio.gather(
            *(
                conn.request(
                    "Filter", {"Operation": "Add", "MatchCriteria": f"name({name})"}, timeout_s
                )
                for name in names
            )
        )  # a lost connection or a timeout raises: the next session tries again
        refused = [answer.response for answer in lists if not answer.response.ok]
        if not refused:
            return True
        self.names = ()  # from now on, every event of the login's classes
        why = refused[0].message or refused[0].response
        if len(refused) < len(names):
            raise AmiConnectionLost(
                f"{where} took only part of the event filter ({why}): logging in again without one"
            )
        log.warning(
            "%s refused the event filter (%s): reading every event of the login's classes "
            "(Filter needs write=system for the manager user)",
            where,
            why,
        )
        return False
