"""``EslChannel``: the ``CallChannel`` port over an outbound Event Socket (one call).

Every dialplan application runs through ``sendmsg`` with ``call-command: execute``,
``event-lock: true`` (applications run in order) and an ``Event-UUID``; the channel waits
for the ``command/reply`` and then for the ``CHANNEL_EXECUTE_COMPLETE`` whose
``Application-UUID`` is that id, all under ``asyncio.timeout(command_timeout)``.

* ``read_digits``: ``read <min> <max> file_string://a.wav!b.wav IVR_READ <timeout> #``;
  the digits are ``variable_IVR_READ`` and the outcome ``variable_read_result``
  (``success``/``timeout``/``failure``) of the completion event.
  A ``sensitive`` read is followed by ``unset IVR_READ``.
* ``set_variables``: one ``multiset`` when every name and value is plain, else ``set`` each.
* The caller hanging up (``CHANNEL_HANGUP`` / ``CHANNEL_HANGUP_COMPLETE`` of this channel,
  a completion event whose channel is already hung up, a ``text/disconnect-notice``, EOF)
  raises ``CallerHungUp``, now and for every later call, which then writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ivr_engine.domain.errors import CallerHungUp, RecordingFailed
from ivr_engine.telephony.esl.connection import EslConnection
from ivr_engine.telephony.esl.errors import EslCommandError, EslDisconnected, EslProtocolError
from ivr_engine.telephony.esl.protocol import ChannelData, EslEvent, execute_headers

DEFAULT_COMMAND_TIMEOUT = 120.0
READ_VARIABLE = "IVR_READ"
READ_RESULTS = frozenset({"success", "timeout", "failure"})
HANGUP_EVENTS = frozenset({"CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"})
_DTMF = re.compile(r"[0-9*#A-Da-d]*")
_PROMPT_ID = re.compile(r"[^\s!,&|\"'{}\[\]]+")  # ``!`` separates files in file_string://
_PLAIN = re.compile(r"[A-Za-z0-9_.:@+\-/]*")  # names and values multiset passes unchanged
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


@dataclass(frozen=True, slots=True)
class ReadResult:
    digits: str
    timed_out: bool


class EslChannel:
    """One call's outbound socket. Not reusable after ``CallerHungUp`` or a broken stream."""

    def __init__(
        self,
        connection: EslConnection,
        data: ChannelData,
        *,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        prompt_suffix: str = ".wav",
    ) -> None:
        self._conn = connection
        self.data = data
        self._timeout = command_timeout
        self._suffix = prompt_suffix
        self._hung_up = False
        self._outcome_kept = False
        self.commands_sent = 0

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    @property
    def usable(self) -> bool:
        return not self._hung_up and not self._conn.broken

    # ------------------------------------------------------------------ execute

    async def execute(self, app: str, arg: str) -> EslEvent:
        """Run one application; its ``CHANNEL_EXECUTE_COMPLETE`` event."""
        if self._hung_up:
            raise CallerHungUp(f"caller already hung up; not running {app}")
        event_uuid = str(uuid.uuid4())
        headers = execute_headers(app, arg, event_uuid)
        try:
            async with asyncio.timeout(self._timeout):
                self.commands_sent += 1
                reply = await self._conn.command("sendmsg", headers)
                if not reply.ok:
                    raise EslCommandError(f"execute {app}", reply.text)
                return await self._completion(event_uuid, app)
        except EslDisconnected as exc:
            self._hung_up = True
            raise CallerHungUp(f"call gone during {app}: {exc}") from None
        except TimeoutError:
            raise EslProtocolError(f"{app} did not complete within {self._timeout}s") from None

    async def _completion(self, event_uuid: str, app: str) -> EslEvent:
        while True:
            event = await self._conn.next_event()
            if event.name in HANGUP_EVENTS:
                self._hung_up = True
                raise CallerHungUp(f"caller hung up during {app} ({event.name})")
            if event.name != "CHANNEL_EXECUTE_COMPLETE":
                continue  # DTMF, CHANNEL_EXECUTE, PLAYBACK_*: nothing to wait for
            if event.get("Application-UUID") != event_uuid:
                continue
            if event.get("Answer-State") == "hangup":
                self._hung_up = True
                raise CallerHungUp(f"caller hung up during {app}")
            return event

    # ------------------------------------------------------------------ CallChannel

    async def read_digits(
        self, prompts: Sequence[str], timeout_ms: int, max_digits: int, *, sensitive: bool = False
    ) -> ReadResult:
        """Play the prompts in order and collect up to ``max_digits`` keys (``#`` ends).
        ``sensitive``: then ``unset IVR_READ``, so the digits are not carried as
        ``variable_IVR_READ`` by every later event of the channel and its CDR."""
        arg = read_arg(prompts, timeout_ms, max_digits, self._suffix)
        event = await self.execute("read", arg)
        digits = event.variable(READ_VARIABLE) or ""
        result = event.variable("read_result") or ""
        if sensitive:
            await self.execute("unset", READ_VARIABLE)
        if result not in READ_RESULTS or not _DTMF.fullmatch(digits):
            raise EslProtocolError(f"unexpected read outcome: {result!r} {digits[:20]!r}")
        return ReadResult(digits=digits, timed_out=result == "timeout")

    async def record_utterance(self, path: str, max_ms: int, silence_s: int) -> str | None:
        """Not on FreeSWITCH yet: a speech menu there behaves as if the caller said nothing
        (the flow's no-input path), never dead air."""
        raise RecordingFailed("speech input is not implemented for FreeSWITCH (ESL) yet")

    async def set_variable(self, name: str, value: str) -> None:
        _check_variable(name, value)
        await self.execute("set", f"{name}={value}")

    def keep_outcome(self) -> None:
        """From now on the call is not told ``IVR_OUTCOME=failed`` (a stop, a failure)."""
        self._outcome_kept = True

    @property
    def outcome_kept(self) -> bool:
        return self._outcome_kept

    async def set_variables(self, values: Mapping[str, str]) -> None:
        """One ``multiset`` for plain values (it splits on spaces), ``set`` for the rest."""
        for name, value in values.items():
            _check_variable(name, value)
        plain = {k: v for k, v in values.items() if _PLAIN.fullmatch(v)}
        for name, value in values.items():
            if name not in plain:
                await self.set_variable(name, value)
        if len(plain) == 1:
            ((name, value),) = plain.items()
            await self.set_variable(name, value)
        elif plain:
            await self.execute("multiset", " ".join(f"{k}={v}" for k, v in plain.items()))

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        if not self._hung_up:
            with contextlib.suppress(CallerHungUp):
                await self.execute("hangup", cause)
        self._hung_up = True


def read_arg(prompts: Sequence[str], timeout_ms: int, max_digits: int, suffix: str) -> str:
    """``read``'s argument: ``1 <max> file_string://a.wav!b.wav IVR_READ <timeout> #``."""
    if not prompts:
        raise ValueError("read_digits needs at least one prompt")
    if not 1 <= max_digits <= 128:
        raise ValueError(f"max_digits must be 1..128, not {max_digits}")
    bad = [p for p in prompts if not _PROMPT_ID.fullmatch(p)]
    if bad:
        raise ValueError(f"prompt names may not contain spaces, quotes or '!': {bad!r}")
    files = "!".join(f"{p}{suffix}" for p in prompts)
    return f"1 {max_digits} file_string://{files} {READ_VARIABLE} {max(timeout_ms, 1)} #"


def _check_variable(name: str, value: str) -> None:
    if not _VAR_NAME.fullmatch(name):
        raise ValueError(f"invalid channel variable name {name!r}")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"channel variable {name} may not contain CR, LF or NUL")
