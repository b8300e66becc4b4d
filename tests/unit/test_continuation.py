"""Continuation tokens: round trip, single use, rotation, and every way a token can be bad."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_bridge.continuation import ContinuationTokens
from crm_bridge.continuation_claims import Continuation, fields_in_clear
from crm_bridge.continuation_errors import (
    ContinuationError,
    ExpiredToken,
    InvalidContinuation,
    MalformedToken,
    TamperedToken,
    TokenAlreadyUsed,
    UnknownSigningKey,
)
from crm_bridge.continuation_used_tokens import InMemoryUsedTokenStore
from crm_bridge.continuation_wire import (
    MAX_TOKEN_CHARS,
    Keyring,
    SigningKey,
    decode_token,
    encode_token,
)
from ivr_engine.domain.errors import IvrEngineError
from ivr_engine.domain.models import FieldSpec, Menu, MenuOption
from ivr_engine.omni.wiring import clear_fields_of

T0 = 1_750_000_000.0
KEY_A = SigningKey("2025a", b"a" * 32)
KEY_B = SigningKey("2025b", b"b" * 32)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(keyring: Keyring | None = None, clock: Clock | None = None) -> ContinuationTokens:
    clock = clock or Clock()
    return ContinuationTokens(
        keyring or Keyring(KEY_A), InMemoryUsedTokenStore(clock=clock), clock=clock
    )


def issue(tokens: ContinuationTokens) -> str:
    return tokens.issue(
        case_id="case-42",
        customer_id="cust-7",
        channel="chat",
        intent="billing",
        collected={"account_number": "12345678", "postcode": "2000"},
        clear={"account_number"},
    )


def payload_of(token: str) -> dict[str, object]:
    part = token.split(".")[2]
    doc: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return doc


async def test_round_trip_carries_case_customer_channel_intent_and_fields() -> None:
    tokens = make()
    claims = await tokens.redeem(issue(tokens))
    assert (claims.case_id, claims.customer_id, claims.channel) == ("case-42", "cust-7", "chat")
    assert claims.intent == "billing"
    assert claims.fields == {"account_number": "12345678"}
    assert claims.sensitive_fields == frozenset({"postcode"})
    assert (claims.issued_at, claims.expires_at, claims.key_id) == (int(T0), int(T0) + 900, "2025a")


def test_token_is_compact_url_safe_and_versioned() -> None:
    token = issue(make())
    version, kid, _, sig = token.split(".")
    assert (version, kid) == ("c1", "2025a")
    assert len(base64.urlsafe_b64decode(sig + "=")) == 32
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert len(token) < 400


def test_sensitive_values_never_appear_in_the_token_only_their_names() -> None:
    token = issue(make())
    doc = payload_of(token)
    assert doc["f"] == {"account_number": "12345678"}
    assert doc["s"] == ["postcode"]
    assert "2000" not in json.dumps(doc)


def test_fields_not_listed_as_clear_are_sensitive_by_default() -> None:
    tokens = make()
    token = tokens.issue(
        case_id="c", customer_id="u", channel="sms", collected={"pin_hint": "9876"}
    )
    assert "9876" not in json.dumps(payload_of(token))
    assert tokens.inspect(token).sensitive_fields == frozenset({"pin_hint"})


def test_fields_in_clear_follows_the_menu_field_specs() -> None:
    specs = {
        "account_number": FieldSpec("account_number", "p", sensitive=False),
        "postcode": FieldSpec("postcode", "p", sensitive=True),
    }
    assert fields_in_clear(specs) == frozenset({"account_number"})


def test_a_field_sensitive_in_any_menu_never_travels_in_clear() -> None:
    """``postcode`` sensitive in billing, not in sales: it goes by name only (was: in clear,
    the union over menus, readable in the timeline's unsigned token)."""
    option = MenuOption("operator", "Operator", "ivr-engine/label-operator", "0")
    postcode = FieldSpec("postcode", "p", sensitive=True)
    billing = Menu("billing", (option,), fields={"postcode": postcode})
    sales = Menu(
        "sales",
        (option,),
        fields={
            "postcode": FieldSpec("postcode", "p", sensitive=False),
            "account_number": FieldSpec("account_number", "p", sensitive=False),
        },
    )
    assert clear_fields_of({"billing": billing, "sales": sales}) == {"account_number"}
    assert clear_fields_of({"sales": sales}) == {"postcode", "account_number"}


async def test_redeeming_twice_fails_clearly() -> None:
    tokens = make()
    token = issue(tokens)
    first = await tokens.redeem(token)
    with pytest.raises(TokenAlreadyUsed, match="already been redeemed") as used:
        await tokens.redeem(token)
    assert used.value.token_id == first.token_id


async def test_inspect_does_not_consume() -> None:
    tokens = make()
    token = issue(tokens)
    assert tokens.inspect(token) == tokens.inspect(token)
    await tokens.redeem(token)


async def test_expired_token_is_rejected_at_inspect_and_redeem() -> None:
    clock = Clock()
    tokens = make(clock=clock)
    token = issue(tokens)
    clock.now = T0 + 899.5
    tokens.inspect(token)
    clock.now = T0 + 900
    with pytest.raises(ExpiredToken) as expired:
        tokens.inspect(token)
    assert expired.value.expired_at == int(T0) + 900
    with pytest.raises(ExpiredToken):
        await tokens.redeem(token)


async def test_rotation_signs_with_current_and_verifies_with_any_key_in_the_ring() -> None:
    clock = Clock()
    old = make(Keyring(KEY_A), clock)
    old_token = issue(old)
    rotated = make(Keyring(KEY_B, previous=[KEY_A]), clock)
    new_token = issue(rotated)
    assert new_token.split(".")[1] == "2025b"
    assert (await rotated.redeem(old_token)).key_id == "2025a"
    assert (await rotated.redeem(new_token)).key_id == "2025b"
    with pytest.raises(UnknownSigningKey, match="'2025b'"):
        old.inspect(new_token)


def test_same_key_id_with_another_secret_is_tampered() -> None:
    token = issue(make(Keyring(KEY_A)))
    impostor = Keyring(SigningKey("2025a", b"z" * 32))
    with pytest.raises(TamperedToken):
        decode_token(token, impostor, T0)


def test_changed_payload_with_valid_encoding_is_tampered() -> None:
    token = issue(make())
    version, kid, _, sig = token.split(".")
    doc = payload_of(token)
    doc["cust"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    with pytest.raises(TamperedToken):
        decode_token(f"{version}.{kid}.{forged}.{sig}", Keyring(KEY_A), T0)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "c1.2025a.e30",
        "c2.2025a.e30.AAAA",
        "c1.2025a.e30.AAAA.extra",
        "c1.bad kid.e30.AAAA",
        "c1.2025a.e30=.AAAA",
        "c1.2025a.e30.AAA=",
        "c1.2025a.é30.AAAA",
        "c1." + "A" * MAX_TOKEN_CHARS,
    ],
)
def test_malformed_tokens_are_rejected(token: str) -> None:
    with pytest.raises(MalformedToken):
        decode_token(token, Keyring(KEY_A), T0)


def test_signed_but_invalid_payload_is_malformed() -> None:
    claims = make().inspect(issue(make()))
    token = encode_token(claims, KEY_A)
    version, kid, _, _ = token.split(".")
    payload = base64.urlsafe_b64encode(b'{"jti": 1}').rstrip(b"=").decode()
    signed = f"{version}.{kid}.{payload}"
    sig = hmac.new(KEY_A.secret, signed.encode(), hashlib.sha256).digest()
    bad = f"{signed}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(MalformedToken, match="payload is invalid"):
        decode_token(bad, Keyring(KEY_A), T0)


def _signed(claims: dict[str, object], key: SigningKey = KEY_A) -> str:
    """A token signed with ``key`` over hand-made claims (what an oracle that signs any
    unsigned payload, like the old webhook relay, would hand out)."""
    raw = json.dumps(claims, separators=(",", ":")).encode()
    signed = f"c1.{key.key_id}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}"
    sig = hmac.new(key.secret, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


@pytest.mark.parametrize(
    ("iat", "exp", "message"),
    [
        (int(T0), int(T0) + 10 * 365 * 86400, "lifetime"),  # ten years
        (int(T0), int(T0) + 3601, "lifetime"),  # one second over MAX_TTL_S
        (int(T0) + 86400, int(T0) + 86400 + 60, "issued in the future"),
        (int(T0), int(T0), "lifetime"),
    ],
)
def test_signed_tokens_living_longer_than_any_issued_one_are_refused(
    iat: int, exp: int, message: str
) -> None:
    claims = {"jti": "forged-1", "iat": iat, "exp": exp, "case": "c", "cust": "v"}
    token = _signed({**claims, "ch": "chat", "int": None, "f": {}, "s": []})
    with pytest.raises(MalformedToken, match=message):
        decode_token(token, Keyring(KEY_A), T0)
    fine = {**claims, "iat": int(T0), "exp": int(T0) + 3600, "ch": "chat", "int": None}
    assert decode_token(_signed({**fine, "f": {}, "s": []}), Keyring(KEY_A), T0).case_id == "c"
    assert decode_token(
        _signed({**fine, "iat": int(T0) + 60, "exp": int(T0) + 120, "f": {}, "s": []}),
        Keyring(KEY_A),
        T0,
    )


def test_error_types_are_distinct_engine_errors() -> None:
    kinds = [MalformedToken, TamperedToken, ExpiredToken, UnknownSigningKey, TokenAlreadyUsed]
    assert len(set(kinds)) == 5
    for kind in kinds:
        assert issubclass(kind, ContinuationError)
        assert issubclass(kind, IvrEngineError)
    assert not issubclass(TamperedToken, MalformedToken)
    assert not issubclass(ExpiredToken, TamperedToken)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"case_id": ""}, "case_id"),
        ({"customer_id": "has space"}, "customer_id"),
        ({"channel": "fax"}, "channel 'fax'"),
        ({"intent": "Bad-Intent"}, "intent"),
        ({"collected": {f"f{i}": "x" for i in range(11)}}, "at most 10"),
        ({"collected": {"Bad Name": "x"}}, "field name"),
        ({"collected": {"note": "x" * 65}, "clear": {"note"}}, "at most 64 characters"),
    ],
)
def test_issue_rejects_what_a_token_may_not_carry(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"case_id": "c", "customer_id": "u", "channel": "voice"}
    args.update(kwargs)
    with pytest.raises(InvalidContinuation, match=message):
        make().issue(**args)  # type: ignore[arg-type]


def test_a_token_at_every_limit_still_fits_a_url() -> None:
    token = make().issue(
        case_id="c" * 64,
        customer_id="u" * 64,
        channel="messenger",
        intent="i" * 40,
        collected={f"{'f' * 38}_{i}": "v" * 64 for i in range(10)},
        clear={f"{'f' * 38}_{i}" for i in range(10)},
    )
    assert len(token) <= MAX_TOKEN_CHARS
    claims = make().inspect(token)
    assert len(claims.fields) == 10
    assert make().inspect(
        make().issue(
            case_id="c", customer_id="u", channel="web", collected={"name": "Zoë"}, clear={"name"}
        )
    ).fields == {"name": "Zoë"}
    with pytest.raises(InvalidContinuation, match="UTF-8"):
        make().issue(
            case_id="c", customer_id="u", channel="web", collected={"n": "\ud800"}, clear={"n"}
        )


def test_keys_are_validated_and_secrets_not_shown() -> None:
    with pytest.raises(InvalidContinuation, match="at least 32"):
        SigningKey("k", b"short")
    with pytest.raises(InvalidContinuation, match="key id"):
        SigningKey("no/slash", b"x" * 32)
    with pytest.raises(InvalidContinuation, match="twice"):
        Keyring(KEY_A, previous=[SigningKey("2025a", b"c" * 32)])
    assert "aaaa" not in repr(KEY_A)
    with pytest.raises(InvalidContinuation, match="ttl_s"):
        ContinuationTokens(Keyring(KEY_A), InMemoryUsedTokenStore(), ttl_s=7200)


async def test_in_memory_store_forgets_ids_once_they_expire() -> None:
    clock = Clock(0.0)
    store = InMemoryUsedTokenStore(clock=clock)
    assert await store.mark_used("t1", 10)
    assert not await store.mark_used("t1", 10)
    clock.now = 10.0
    assert await store.mark_used("t1", 10)
    assert await store.mark_used("t2", 5)
    assert not await store.mark_used("t1", 10)


# --------------------------------------------------------------------------- properties

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ids = st.builds(str.__add__, st.sampled_from(_ALNUM), st.text(_ALNUM + "_.:@-", max_size=20))
_names = st.builds(
    str.__add__, st.sampled_from(_LOWER), st.text(_LOWER + "0123456789_", max_size=10)
)
_claims = st.builds(
    Continuation,
    token_id=st.text(_ALNUM + "_-", min_size=22, max_size=22),
    case_id=_ids,
    customer_id=_ids,
    channel=st.sampled_from(["voice", "chat", "email", "sms", "messenger", "web"]),
    intent=st.none() | _names,
    fields=st.dictionaries(_names, st.text(max_size=64), max_size=5),
    sensitive_fields=st.just(frozenset()),
    issued_at=st.just(int(T0)),
    expires_at=st.integers(int(T0) + 1, int(T0) + 3600),
    key_id=st.just(KEY_A.key_id),
)


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(claims=_claims, sensitive=st.frozensets(st.sampled_from(["postcode", "dob"])))
def test_round_trip_property(claims: Continuation, sensitive: frozenset[str]) -> None:
    claims = replace(claims, sensitive_fields=sensitive - claims.fields.keys())
    assert decode_token(encode_token(claims, KEY_A), Keyring(KEY_A), T0) == claims


_TOKEN = issue(make())


def test_every_position_with_every_url_safe_character_is_rejected() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
    keyring = Keyring(KEY_A)
    for index, original in enumerate(_TOKEN):
        for char in alphabet.replace(original, ""):
            with pytest.raises(ContinuationError):
                decode_token(_TOKEN[:index] + char + _TOKEN[index + 1 :], keyring, T0)


@settings(max_examples=150)
@given(data=st.data())
def test_any_change_of_any_character_is_rejected(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(_TOKEN) - 1))
    char = data.draw(st.characters().filter(lambda c: c != _TOKEN[index]))
    tampered = _TOKEN[:index] + char + _TOKEN[index + 1 :]
    with pytest.raises(ContinuationError):
        decode_token(tampered, Keyring(KEY_A), T0)


@settings(max_examples=150)
@given(data=st.data())
def test_any_bit_flip_truncation_or_extension_is_rejected(data: st.DataObject) -> None:
    raw = bytearray(_TOKEN.encode())
    how = data.draw(st.sampled_from(["flip", "cut", "add"]))
    if how == "flip":
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "cut":
        cut = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:cut] if data.draw(st.booleans()) else raw[len(raw) - cut :]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    tampered = raw.decode("utf-8", errors="replace")
    with pytest.raises(ContinuationError):
        decode_token(tampered, Keyring(KEY_A), T0)
