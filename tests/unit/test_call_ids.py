"""A call whose peer gives no unique id (no ``agi_uniqueid``, no ``Unique-ID``) still gets
a call id of its own: the timeline's event ids derive from it and a repeated id is taken
as a replay, so a later call would be dropped as a duplicate of an earlier one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ivr_engine.telephony.agi import AgiRequest
from ivr_engine.telephony.esl.ivr_handler import incoming_call as esl_incoming_call
from ivr_engine.telephony.esl.protocol import ChannelData
from ivr_engine.telephony.ivr_handler import incoming_call

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CALLS = 200


def _random_suffix(call_id: str, prefix: str) -> None:
    assert call_id.startswith(prefix), call_id
    uuid.UUID(call_id.removeprefix(prefix))  # a random UUID, not a memory address


def test_agi_calls_without_a_uniqueid_never_share_a_call_id() -> None:
    seen = set()
    for _ in range(CALLS):  # each request freed before the next: CPython reuses its id()
        request = AgiRequest({"agi_callerid": "+15550001"}, "ivr", {}, ())
        seen.add(incoming_call(request, NOW).call_id)
        del request
    assert len(seen) == CALLS
    for call_id in seen:
        _random_suffix(call_id, "agi-")


def test_esl_calls_without_a_unique_id_never_share_a_call_id() -> None:
    seen = set()
    for _ in range(CALLS):
        data = ChannelData({"Caller-Caller-ID-Number": "+15550001"})
        seen.add(esl_incoming_call(data, NOW).call_id)
        del data
    assert len(seen) == CALLS
    for call_id in seen:
        _random_suffix(call_id, "esl-")


def test_a_given_unique_id_is_kept() -> None:
    request = AgiRequest({"agi_uniqueid": "1732440000.7"}, "ivr", {}, ())
    assert incoming_call(request, NOW).call_id == "1732440000.7"
    assert esl_incoming_call(ChannelData({"Unique-ID": "u-1"}), NOW).call_id == "u-1"
