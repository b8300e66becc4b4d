"""The ESL layer's typed errors. A caller hanging up is ``CallerHungUp`` (not an error)."""

from __future__ import annotations

from ivr_engine.domain.errors import ChannelError


class EslError(ChannelError):
    """Base class for Event Socket failures."""


class EslProtocolError(EslError):
    """The peer sent something that is not ESL: a malformed header block, a bad or oversized
    ``Content-Length``, a truncated body, an event that does not parse."""


class EslCommandError(EslError):
    """FreeSWITCH answered a command with ``-ERR ...``."""

    def __init__(self, command: str, reply_text: str) -> None:
        super().__init__(f"{command!r} refused: {reply_text}")
        self.command = command
        self.reply_text = reply_text


class EslDisconnected(EslError):
    """The connection ended: EOF, a reset, or a ``text/disconnect-notice``."""


class EslAuthFailed(EslError):
    """The inbound socket refused the password (``-ERR invalid``)."""
