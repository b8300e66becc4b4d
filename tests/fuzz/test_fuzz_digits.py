"""Targeted property tests: numbers read from peers with ``str.isdigit()`` and then
``int()``/``float()``. ``isdigit`` is true for characters ``int`` refuses (superscripts
``²``, circled ``①``, ...), so a guard written as ``if s.isdigit(): int(s)`` raises
``ValueError`` on exactly those. Every function here documents a fallback instead."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from crm_bridge.calls.esl_normalise import event_time
from crm_bridge.webhooks.retry import Outcome, classify_status, parse_retry_after
from ivr_engine.contact_center.device_state import device_state_name
from ivr_engine.identity import InvalidIdentity, normalize_identity
from ivr_engine.telephony.esl.protocol import EslEvent

NOW = 1_700_000_000.0
AT = datetime(2024, 1, 1, tzinfo=UTC)
# ASCII digits, other scripts' decimal digits (int() takes them), and digits int() refuses
_DIGITISH = (
    "0123456789"
    + "\u0660\u0661\u0662\u0663"
    + "\u0966\u0967"
    + "\uff10\uff19"
    + "\u00b2\u00b3\u00b9\u2070"
    + "\u2460\u2468"
    + "\u2082"
    + " "
)
_numberish = st.text(alphabet=_DIGITISH, min_size=1, max_size=18)


@given(_numberish)
@example("²")
def test_retry_after_is_seconds_or_none(value: str) -> None:
    """``Retry-After`` comes from any webhook receiver on the internet."""
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or seconds >= 0


@given(st.sampled_from([429, 500, 503]), _numberish)
@example(503, "²")
def test_a_retryable_answer_is_classified_whatever_its_retry_after(status: int, value: str) -> None:
    result = classify_status(status, value, "", NOW)
    assert result.outcome is Outcome.RETRY


@given(_numberish)
@example("²")
def test_queue_member_status_is_a_state_name_or_none(status: str) -> None:
    name = device_state_name(status)
    assert name is None or isinstance(name, str)


@given(_numberish)
@example("²")
def test_esl_event_time_falls_back_to_the_receive_time(stamp: str) -> None:
    when = event_time(EslEvent({"Event-Date-Timestamp": stamp}), AT)
    assert when.tzinfo is not None


@given(_numberish)
@example("²")
def test_account_identities_are_ascii_digits(value: str) -> None:
    try:
        account = normalize_identity("account", value)
    except InvalidIdentity:
        return
    assert account.isascii() and account.isdigit()


@given(_numberish)
@example("²")
def test_agents_csv_numbers_are_config_errors(number: str) -> None:
    from ivr_engine.contact_center.agents_csv import records_from_csv
    from ivr_engine.domain.errors import ConfigError

    for text in (
        f"agent_id,name,sip_endpoint,skills\na1,Ann,PJSIP/a1,billing:{number}\n",
        f"agent_id,name,sip_endpoint,max_concurrent\na1,Ann,PJSIP/a1,{number}\n",
    ):
        with contextlib.suppress(ConfigError):
            records_from_csv(text)


@given(_numberish)
@example("²")
def test_esl_channel_list_created_epoch_falls_back(epoch: str) -> None:
    from crm_bridge.calls.esl_resync import ChannelRow, _created

    assert _created(ChannelRow({"created_epoch": epoch}), AT) <= AT
