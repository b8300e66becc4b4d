"""Pure parts of the webhooks: signatures, event bodies, retry decisions, subscription files.

(Unit tests; they live here because the webhook tests are kept together under
``tests/component/test_webhooks*.py``.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_bridge.webhooks import (
    InvalidEvent,
    SignatureMismatch,
    SignatureMissing,
    Subscription,
    SubscriptionRegistry,
    TimestampOutOfTolerance,
    WebhookSignatureError,
    compute_signature,
    load_subscriptions,
    parse_subscriptions,
    verify_signature,
)
from crm_bridge.webhooks.events import EventLimits, encode_event
from crm_bridge.webhooks.retry import (
    DeliveryPolicy,
    Outcome,
    backoff_delay,
    classify_status,
    parse_retry_after,
)
from crm_bridge.webhooks.signing import delivery_headers
from ivr_engine.domain.errors import ConfigError, IvrEngineError

SECRET = "s3cret-s3cret-s3cret"
NOW = 1_750_000_000
BODY = b'{"data":{"x":1},"id":"evt_1","occurred_at":"2025-06-15T15:06:40.000Z","type":"call.ended"}'


def headers(ts: int = NOW, body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return delivery_headers(
        secret, event_type="call.ended", delivery_id="dlv_1", timestamp=ts, body=body
    )


# --------------------------------------------------------------------------- signing


def test_signature_is_hmac_sha256_of_timestamp_dot_raw_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, NOW, BODY) == expected
    h = headers()
    assert h["X-Seed-Signature"] == f"v1={expected}"
    assert (h["X-Seed-Event"], h["X-Seed-Delivery"], h["X-Seed-Timestamp"]) == (
        "call.ended",
        "dlv_1",
        str(NOW),
    )


def test_verify_accepts_a_fresh_delivery_with_any_header_case() -> None:
    verify_signature(SECRET, headers(), BODY, NOW + 299)
    verify_signature(SECRET, {k.lower(): v for k, v in headers().items()}, BODY, NOW - 300)


@pytest.mark.parametrize("skew", [301, -301, 86400])
def test_verify_rejects_stale_or_future_timestamps(skew: int) -> None:
    with pytest.raises(TimestampOutOfTolerance, match="tolerance 300"):
        verify_signature(SECRET, headers(), BODY, NOW + skew)


def test_verify_tolerance_is_configurable() -> None:
    verify_signature(SECRET, headers(), BODY, NOW + 500, tolerance_s=600)
    with pytest.raises(TimestampOutOfTolerance):
        verify_signature(SECRET, headers(), BODY, NOW + 11, tolerance_s=10)


def test_verify_rejects_wrong_secret_changed_body_and_moved_timestamp() -> None:
    with pytest.raises(SignatureMismatch):
        verify_signature("another-secret-123", headers(), BODY, NOW)
    with pytest.raises(SignatureMismatch):
        verify_signature(SECRET, headers(), BODY + b" ", NOW)
    moved = {**headers(), "X-Seed-Timestamp": str(NOW + 1)}  # signature of the old timestamp
    with pytest.raises(SignatureMismatch):
        verify_signature(SECRET, moved, BODY, NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"X-Seed-Timestamp": None}, "missing header X-Seed-Timestamp"),
        ({"X-Seed-Signature": None}, "missing header X-Seed-Signature"),
        ({"X-Seed-Timestamp": "1.5e9"}, "unix seconds"),
        ({"X-Seed-Timestamp": "-5"}, "unix seconds"),
        ({"X-Seed-Signature": "v0=abc"}, "no 'v1=<64 hex>'"),
        ({"X-Seed-Signature": "v1=XYZ"}, "no 'v1=<64 hex>'"),
    ],
)
def test_verify_rejects_missing_or_malformed_headers(
    change: dict[str, str | None], message: str
) -> None:
    h: dict[str, str] = {}
    for key, value in {**headers(), **change}.items():
        if value is not None:
            h[key] = value
    with pytest.raises(SignatureMissing, match=message):
        verify_signature(SECRET, h, BODY, NOW)


def test_verify_accepts_any_matching_v1_entry_for_secret_rotation() -> None:
    good = headers()["X-Seed-Signature"]
    rotated = {**headers(), "X-Seed-Signature": f"v1={'0' * 64}, {good}, v2=future"}
    verify_signature(SECRET, rotated, BODY, NOW)


def test_signature_errors_are_engine_errors() -> None:
    for kind in (SignatureMismatch, SignatureMissing, TimestampOutOfTolerance):
        assert issubclass(kind, WebhookSignatureError)
        assert issubclass(kind, IvrEngineError)


@settings(max_examples=60)
@given(body=st.binary(max_size=300), data=st.data())
def test_any_change_to_the_body_is_rejected(body: bytes, data: st.DataObject) -> None:
    h = headers(body=body)
    verify_signature(SECRET, h, body, NOW)
    tampered = data.draw(st.binary(max_size=300).filter(lambda b: b != body))
    with pytest.raises(SignatureMismatch):
        verify_signature(SECRET, h, tampered, NOW)


# --------------------------------------------------------------------------- events

WHEN = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_event_body_is_a_compact_sorted_envelope() -> None:
    event = encode_event("call.ended", {"b": [1, "é"], "a": None}, event_id="e1", occurred_at=WHEN)
    assert (
        event.body
        == (
            '{"data":{"a":null,"b":[1,"é"]},"id":"e1",'
            '"occurred_at":"2025-06-01T12:00:00.000Z","type":"call.ended"}'
        ).encode()
    )
    other_zone = WHEN.astimezone(timezone(timedelta(hours=2)))
    assert encode_event("call.ended", {}, event_id="e1", occurred_at=other_zone).body == (
        encode_event("call.ended", {}, event_id="e1", occurred_at=WHEN).body
    )
    generated = json.loads(encode_event("chat.message", {}).body)
    assert generated["id"].startswith("evt_")


def _deep(levels: int) -> dict[str, object]:
    data: dict[str, object] = {}
    node = data
    for _ in range(levels):
        node["n"] = {}
        node = node["n"]  # type: ignore[assignment]
    return data


def _circular() -> dict[str, object]:
    data: dict[str, object] = {}
    data["self"] = data
    return data


@pytest.mark.parametrize(
    ("event_type", "data", "message"),
    [
        ("Call Ended", {}, "event type 'Call Ended'"),
        ("*", {}, "event type '\\*'"),
        ("call", {}, "event type 'call'"),
        ("call.ended", [1, 2], "data must be a JSON object"),
        ("call.ended", {"x": float("nan")}, "data.x: nan is not valid JSON"),
        ("call.ended", {"x": [0, float("inf")]}, r"data.x\[1\]: inf is not valid JSON"),
        ("call.ended", {"x": 2**60}, "outside ±2\\^53-1"),
        ("call.ended", {1: "x"}, "key 1 is not a string"),
        ("call.ended", {"x": b"raw"}, "bytes is not a JSON type"),
        ("call.ended", {"x": object()}, "object is not a JSON type"),
        ("call.ended", {"x": {1, 2}}, "set is not a JSON type"),
        ("call.ended", {"x": "\ud800"}, "lone surrogate"),
        ("call.ended", _deep(40), "nested deeper than 16"),
        ("call.ended", _circular(), "nested deeper than 16 \\(or circular\\)"),
        ("call.ended", {"x": "a" * 70_000}, "larger than 65536 bytes"),
        ("call.ended", {"x": list(range(6000))}, "more than 5000 values"),
        ("call.ended", {f"k{i}": "a" * 30 for i in range(2000)}, "larger than 65536 bytes"),
        ("call.ended", {"x": "é" * 40_000}, "body is 80\\d{3} bytes, limit 65536"),
        ("call.ended", MappingProxyType({"x": 1}), "not JSON-encodable"),
    ],
)
def test_hostile_or_oversized_events_are_refused_with_a_precise_reason(
    event_type: str, data: object, message: str
) -> None:
    with pytest.raises(InvalidEvent, match=message):
        encode_event(event_type, data)  # type: ignore[arg-type]


def test_event_limits_are_configurable_and_ids_and_times_checked() -> None:
    with pytest.raises(InvalidEvent, match="body is"):
        encode_event("call.ivr", {"x": "a" * 150}, limits=EventLimits(max_body_bytes=200))
    with pytest.raises(InvalidEvent, match="id 'bad id'"):
        encode_event("call.ivr", {}, event_id="bad id")
    with pytest.raises(InvalidEvent, match="timezone-aware"):
        encode_event("call.ivr", {}, occurred_at=datetime(2025, 1, 1))


# --------------------------------------------------------------------------- retry


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (429, Outcome.RETRY),
        (400, Outcome.REJECTED),
        (401, Outcome.REJECTED),
        (404, Outcome.REJECTED),
        (410, Outcome.REJECTED),
        (301, Outcome.REJECTED),
        (308, Outcome.REJECTED),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify_status(status, None, "", NOW).outcome is outcome


def test_classify_keeps_the_start_of_the_answer_and_retry_after() -> None:
    result = classify_status(429, "12", "slow down", NOW)
    assert (result.detail, result.retry_after_s) == ("HTTP 429: slow down", 12.0)
    assert "redirects are not followed" in classify_status(302, None, "", NOW).detail
    assert classify_status(400, "12", "", NOW).retry_after_s is None


def test_parse_retry_after_seconds_or_http_date() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(" 0 ", NOW) == 0.0
    date = datetime.fromtimestamp(NOW + 90, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(date, NOW) == pytest.approx(90.0)
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after("-5", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = DeliveryPolicy(base_delay_s=1.0, max_delay_s=60.0)
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 ** (attempt - 1))
        delays = {backoff_delay(policy, attempt, None, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
    assert backoff_delay(policy, 10_000, None, rng) <= 60.0


def test_backoff_honours_retry_after_up_to_a_cap() -> None:
    policy = DeliveryPolicy(base_delay_s=1.0, max_delay_s=60.0, max_retry_after_s=600.0)
    rng = random.Random(1)
    assert backoff_delay(policy, 1, 30.0, rng) == 30.0
    assert backoff_delay(policy, 1, 3600.0, rng) == 600.0
    assert 0.5 <= backoff_delay(policy, 1, 0.0, rng) <= 1.0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"queue_capacity": 0}, {"base_delay_s": 0}, {"timeout_s": 0}],
)
def test_policy_is_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DeliveryPolicy(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- subscriptions

GOOD = """
subscriptions:
  - id: acme-crm
    url: https://crm.example.com/hooks/seed
    secret_env: ACME_SECRET
    events: [call.ivr, call.ended]
  - id: audit
    url: http://127.0.0.1:8080/all
    secret: a-long-enough-secret
    events: ["*"]
  - id: chats
    url: http://localhost/chat
    secret: a-long-enough-secret
    events: ["chat.*"]
"""


def test_subscriptions_load_from_yaml_and_match_by_type_family_or_star(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.yaml"
    path.write_text(GOOD)
    registry = load_subscriptions(path, environ={"ACME_SECRET": "x" * 32})
    assert [s.subscription_id for s in registry] == ["acme-crm", "audit", "chats"]
    acme = registry.get("acme-crm")
    assert acme is not None and acme.secret == "x" * 32
    assert "x" * 32 not in repr(acme)
    assert [s.subscription_id for s in registry.matching("call.ended")] == ["acme-crm", "audit"]
    assert [s.subscription_id for s in registry.matching("chat.message")] == ["audit", "chats"]
    assert [s.subscription_id for s in registry.matching("chatter.x")] == ["audit"]
    assert len(parse_subscriptions("empty.yaml", "")) == 0


def _one(**fields: object) -> str:
    sub: dict[str, object] = {"id": "crm", "url": "https://crm.example.com/h", "events": ["*"]}
    sub.update({"secret": "s" * 16, **fields})
    return json.dumps({"subscriptions": [{k: v for k, v in sub.items() if v is not None}]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_one(url="http://crm.example.com/h"), r"\[0\].url: must use https"),
        (_one(url="http://10.0.0.1/h"), "plain http only for localhost or 127.0.0.1"),
        (_one(url="https://user:pw@crm.example.com/"), "must not contain credentials"),
        (_one(url="ftp://crm.example.com/"), "absolute https:// URL"),
        (_one(url="/relative"), "absolute https:// URL"),
        (_one(url="https://crm.example.com:99999/"), "not a valid URL"),
        (_one(secret=None), "exactly one of 'secret' and 'secret_env'"),
        (_one(secret_env="X"), "exactly one of 'secret' and 'secret_env'"),
        (_one(secret="short"), r"\[0\].secret: String should have at least 16 characters"),
        (_one(secret=None, secret_env="NOT_SET"), "secret_env: environment variable NOT_SET"),
        (_one(events=[]), "events: .*at least 1 item"),
        (_one(events=["Call.Ended"]), r"events\[0\]: 'Call.Ended' is not valid \(use an event"),
        (_one(events=["call.*.x"]), "is not valid"),
        (_one(id="Bad Id"), r"id: 'Bad Id' is not valid \(use 1-64"),
        (_one(colour="red"), "colour: Extra inputs are not permitted"),
        (_one(continuation_links=True), "continuation_links: not with events '\\*'"),
        ("[1, 2]", "expected a mapping with 'subscriptions:'"),
        ("subscriptions: [", "not valid YAML"),
    ],
)
def test_subscription_errors_name_file_key_and_fix(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        parse_subscriptions("config/webhooks.yaml", text, environ={})
    assert str(error.value).startswith("config/webhooks.yaml: ")


def test_only_named_subscriptions_get_continuation_links() -> None:
    text = _one(events=["message.outbound"], continuation_links=True)
    (gateway,) = parse_subscriptions("w.yaml", text)
    assert gateway.continuation_links
    (crm,) = parse_subscriptions("w.yaml", _one(events=["message.outbound"]))
    assert not crm.continuation_links  # off unless asked for


def test_duplicate_ids_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    doc = json.loads(_one())
    doc["subscriptions"] *= 2
    with pytest.raises(ConfigError, match=r"subscriptions\[1\].id: 'crm' is used twice"):
        parse_subscriptions("w.yaml", json.dumps(doc))
    with pytest.raises(ConfigError, match="cannot read webhook subscriptions"):
        load_subscriptions(tmp_path / "missing.yaml")
    registry = SubscriptionRegistry()
    sub = Subscription("crm", "https://crm.example.com/", "s" * 16, frozenset({"*"}))
    registry.add(sub)
    with pytest.raises(ValueError, match="already exists"):
        registry.add(sub)
    with pytest.raises(ValueError, match="https"):
        registry.add(Subscription("x", "http://example.com/", "s" * 16, frozenset({"*"})))
    registry.remove("crm")
    assert registry.get("crm") is None


# --------------------------------------------------------------------------- the docs


def test_the_receiver_example_in_the_docs_verifies_real_deliveries() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "webhooks.md").read_text()
    source = doc.split("```python\nimport hashlib", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec("import hashlib" + source, namespace)
    verify = namespace["verify"]
    assert callable(verify)
    now = int(time.time())
    good = headers(ts=now)
    assert verify(SECRET, good, BODY) is True
    assert verify(SECRET, {k.upper(): v for k, v in good.items()}, BODY) is True
    assert verify(SECRET, good, BODY + b"\n") is False
    assert verify("wrong-secret-wrong", good, BODY) is False
    assert verify(SECRET, headers(ts=now - 301), BODY) is False
    assert verify(SECRET, headers(ts=now + 301), BODY) is False
    assert verify(SECRET, {**good, "X-Seed-Signature": "v1=" + "0" * 64}, BODY) is False
