"""Typed errors of the AMI client: one hierarchy under ``AmiError``.

Connection-level failures (``AmiConnectionLost``, ``AmiProtocolError``, ``AmiPingTimeout``)
end the current connection; the client then reconnects by itself. The others are raised to
the caller of one method and leave the connection as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ivr_engine.domain.errors import IvrEngineError

if TYPE_CHECKING:
    from ivr_engine.telephony.ami.messages import AmiResponse


class AmiError(IvrEngineError):
    """Base class of every AMI client error."""


class AmiProtocolError(AmiError):
    """The peer sent something that is not AMI: bad banner, a line without a colon, a line
    or message over the size limits, an over-long event list. The connection is dropped."""


class AmiConnectionLost(AmiError):
    """The connection closed, was reset, could not be opened, or was dropped by the client."""


class AmiPingTimeout(AmiConnectionLost):
    """No ``Response: Success`` to ``Action: Ping`` in time: the connection is presumed dead."""


class LoginFailed(AmiError):
    """Asterisk refused the credentials (``Response: Error`` / ``Message: Authentication
    failed``). The client keeps retrying at its longest back-off, never in a hot loop."""


class AmiNotConnected(AmiError):
    """An action was requested while the client is not logged in (connecting, backing off)."""


class AmiConnectTimeout(AmiNotConnected, TimeoutError):
    """``wait_connected`` gave up: still not logged in after the timeout."""


class AmiClosed(AmiNotConnected):
    """The client was closed; it will not connect again."""


class AmiActionTimeout(AmiError, TimeoutError):
    """No response (or, for a list, no ``EventList: Complete``) within the action's timeout.
    The connection stays up; a late response, and a late list's events, are discarded."""


class AmiActionFailed(AmiError):
    """Asterisk answered an action with ``Response: Error`` (from ``raise_for_error``)."""

    def __init__(self, response: AmiResponse) -> None:
        action = response.get("ActionID", "?")
        super().__init__(f"AMI action {action} failed: {response.message or response.response}")
        self.response = response


class InvalidAction(AmiError, ValueError):
    """An action that cannot be sent safely: CR/LF/NUL in a value (header injection), a bad
    header name, a reserved header (``Action``/``ActionID``), or over Asterisk's input limits."""


class SubscriptionOverflow(AmiError):
    """A subscriber fell ``maxsize`` events behind. Delivery stopped at that point: the events
    already queued are still yielded in order, then this is raised, never a silent gap."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(
            f"AMI event subscription overflowed: more than {maxsize} events waiting; "
            "events after the last one yielded were not delivered (subscribe again)"
        )
        self.maxsize = maxsize


class SubscriptionFilterError(AmiError):
    """A subscription's own ``where`` filter raised; the subscription ended with this error."""
