"""Resynchronisation over the Event Socket: FreeSWITCH's live channel list against the calls
the bridge believes are live. Pure, like ``resync`` for AMI (the same ``begin_resync`` and
the same steps; the events carry ``esl:`` ids).

The list is ``api show channels as json``: ``{"row_count": N, "rows": [{...}, ...]}`` (no
``rows`` when N is 0), one row per channel, every value a string: ``uuid``, ``direction``,
``created_epoch`` (seconds), ``name``, ``cid_num``, ``cid_name``, ``dest``, ``context``,
``call_uuid`` and, since FreeSWITCH 1.6, ``initial_cid_num``, ``initial_cid_name``,
``initial_dest``, ``initial_context`` (as the channel was created).

A channel hanging up (``state`` ``CS_HANGUP``/``CS_REPORTING``/``CS_DESTROY`` or
``callstate`` ``HANGUP``) counts as gone: the table drops its row only at ``CHANNEL_DESTROY``.

* A live call whose caller channel is not listed ended unseen: ``call.ended`` with
  ``approximate: true``, cause ``None`` (as for AMI). Agent legs no longer listed are
  closed, ringing legs no longer listed forgotten.
* A listed inbound first leg the bridge does not know, created in an ``inbound_contexts``
  context (its ``initial_context``, else its ``context``), started unseen: ``call.started``
  with ``recovered: true``, start time ``created_epoch``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from crm_bridge.calls.esl_normalise import PREFIX
from crm_bridge.calls.model import NormalisedEvent
from crm_bridge.calls.state import BridgeState, CallState
from crm_bridge.calls.steps import StartHeaders, agent_gone, end_call, start_call

__all__ = ["CHANNEL_LIST", "LOST_END", "ChannelRow", "parse_channels", "reconcile_channels"]

CHANNEL_LIST = "show channels as json"
LOST_END = "unknown: the call ended while the bridge was not connected to FreeSWITCH"
_INITIAL = ("cid_num", "cid_name", "dest", "context")
ROW_START = StartHeaders(
    "name", "initial_cid_num", "initial_cid_name", "initial_dest", "initial_context"
)
_MAX_EPOCH_DIGITS = 11
_GONE_STATES = frozenset({"CS_HANGUP", "CS_REPORTING", "CS_DESTROY"})


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One listed channel; ``initial_*`` fall back to the current value when not listed."""

    values: Mapping[str, str]

    def get(self, key: str, default: str = "", /) -> str:
        return self.values.get(key, default)

    @property
    def uuid(self) -> str:
        return self.get("uuid")

    @property
    def up(self) -> bool:
        """Not hanging up: a row stays listed until ``CHANNEL_DESTROY``."""
        return self.get("state") not in _GONE_STATES and self.get("callstate") != "HANGUP"


def parse_channels(output: str) -> list[ChannelRow]:
    """The rows of ``show channels as json``; ``ValueError`` for anything else (``-ERR ...``,
    not JSON, a ``row_count`` that is not the number of rows)."""
    try:
        doc = json.loads(output)
    except (ValueError, RecursionError):  # deep nesting: recursion
        raise ValueError(f"not a channel list: {output[:80]!r}") from None
    count = doc.get("row_count") if isinstance(doc, dict) else None
    rows = doc.get("rows", []) if isinstance(doc, dict) else None
    if not isinstance(count, int) or not isinstance(rows, list) or len(rows) != count:
        raise ValueError(f"not a channel list: {output[:80]!r}")
    if not all(isinstance(row, dict) for row in rows):
        raise ValueError("a channel row is not an object")
    return [_row(row) for row in rows]


def _row(raw: Mapping[str, object]) -> ChannelRow:
    values = {_clean(str(k)): _clean(v) if isinstance(v, str) else "" for k, v in raw.items()}
    for key in _INITIAL:
        values[f"initial_{key}"] = values.get(f"initial_{key}") or values.get(key, "")
    return ChannelRow(values)


def _clean(text: str) -> str:
    """Text every encoder takes: a lone surrogate (``"\\ud800"`` in the JSON, which orjson
    refuses to write back) becomes ``?``."""
    return text.encode("utf-8", "replace").decode("utf-8")


def reconcile_channels(
    state: BridgeState,
    rows: Sequence[ChannelRow],
    suspects: Iterable[str],
    *,
    at: datetime,
) -> list[NormalisedEvent]:
    """Close suspects whose caller channel is not listed; adopt inbound calls not known.

    ``suspects``: ``begin_resync(state)`` once the events read before the list's reply are
    normalised (FreeSWITCH sends them first), so a call that ended or started before the
    list is handled by its own events where the bridge saw them.
    """
    rows = [row for row in rows if row.up]
    live = {row.uuid for row in rows}
    out: list[NormalisedEvent] = []
    for call_id in sorted(suspects):
        call = state.calls.get(call_id)
        if call is None:
            continue
        if call_id in live:
            _forget_gone_legs(state, call, live, at)
        else:
            out.append(end_call(state, call, at, None, LOST_END, approximate=True, prefix=PREFIX))
    for row in rows:
        out += _adopt(state, row, at)
    return out


def _forget_gone_legs(state: BridgeState, call: CallState, live: set[str], at: datetime) -> None:
    for leg in [leg for leg in call.agents if leg not in live]:
        agent_gone(state, call, leg, at)
    call.ringing = [leg for leg in call.ringing if leg in live]
    state.touch(call)


def _is_new_caller(state: BridgeState, row: ChannelRow) -> bool:
    uuid = row.uuid
    first_leg = row.get("call_uuid") in ("", uuid)
    if not uuid or not first_leg or row.get("direction") != "inbound":
        return False
    if state.find(uuid, uuid) is not None or state.has_ended(uuid):
        return False
    return state.config.is_inbound_context(row.get("initial_context"))


def _created(row: ChannelRow, at: datetime) -> datetime:
    epoch = row.get("created_epoch").strip()
    if not (epoch.isascii() and epoch.isdigit()) or len(epoch) > _MAX_EPOCH_DIGITS:
        return at
    return min(at, datetime.fromtimestamp(int(epoch), UTC))


def _adopt(state: BridgeState, row: ChannelRow, at: datetime) -> list[NormalisedEvent]:
    if not _is_new_caller(state, row):
        return []
    started = start_call(row, state, row.uuid, _created(row, at), ROW_START, prefix=PREFIX)
    call = state.calls[row.uuid]
    call.recovered = True
    call.last_event_at = at
    return [replace(started, data={**started.data, "recovered": True, "approximate": True})]
