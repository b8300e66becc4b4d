"""What a continuation token says (``Continuation``), its limits, and its JSON payload (pure).

It says which case and customer it continues, on which channel, and what the caller already
gave the IVR (intent and a few fields): values that may travel in clear, and the names only
of the sensitive ones (see ``crm_bridge.continuation``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar, cast

from crm_bridge.continuation_errors import InvalidContinuation, MalformedToken
from ivr_engine.domain.models import CHANNELS, Channel, FieldSpec

__all__ = [
    "MAX_FIELDS",
    "MAX_ID_CHARS",
    "MAX_TTL_S",
    "MAX_VALUE_CHARS",
    "Continuation",
    "check_claims",
    "claims_from_json",
    "claims_json",
    "fields_in_clear",
]

MAX_FIELDS = 10
MAX_ID_CHARS = 64
MAX_VALUE_CHARS = 64
MAX_TTL_S = 3600  # the longest a token may live (expires_at - issued_at), issued or decoded
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Continuation:
    """What a verified token says."""

    token_id: str
    case_id: str
    customer_id: str
    channel: Channel
    intent: str | None
    fields: Mapping[str, str]  # values that may travel in clear
    sensitive_fields: frozenset[str]  # names only: the caller gave them, look them up
    issued_at: int
    expires_at: int
    key_id: str


def fields_in_clear(specs: Mapping[str, FieldSpec]) -> frozenset[str]:
    """The names of the menu's fields whose values may go in a token (not ``sensitive``)."""
    return frozenset(name for name, spec in specs.items() if not spec.sensitive)


def check_claims(c: Continuation) -> None:
    """``InvalidContinuation`` naming every claim a token may not carry."""
    problems = [
        f"{name} {value!r}: use 1-{MAX_ID_CHARS} of [A-Za-z0-9_.:@-]"
        for name, value in (("case_id", c.case_id), ("customer_id", c.customer_id))
        if not _ID.fullmatch(value)
    ]
    if not 1 <= c.expires_at - c.issued_at <= MAX_TTL_S:
        problems.append(
            f"lifetime {c.expires_at - c.issued_at} s (exp - iat): use 1-{MAX_TTL_S} seconds"
        )
    if c.channel not in CHANNELS:
        problems.append(f"channel {c.channel!r}: use one of {sorted(CHANNELS)}")
    if c.intent is not None and not _NAME.fullmatch(c.intent):
        problems.append(f"intent {c.intent!r}: use [a-z][a-z0-9_]{{0,39}}")
    names = [*c.fields, *c.sensitive_fields]
    if len(names) > MAX_FIELDS:
        problems.append(f"{len(names)} fields: at most {MAX_FIELDS}")
    problems += [f"field name {n!r}: use [a-z][a-z0-9_]{{0,39}}" for n in names if not _ok(n)]
    problems += [
        f"field {name!r}: value must be a UTF-8 string of at most {MAX_VALUE_CHARS} characters"
        for name, value in c.fields.items()
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS or not _utf8(value)
    ]
    if problems:
        raise InvalidContinuation("cannot issue continuation token: " + "; ".join(problems))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _ok(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def claims_json(c: Continuation) -> bytes:
    """The payload: compact JSON, keys in a fixed order (``key_id`` is not in it)."""
    doc = {
        "jti": c.token_id,
        "iat": c.issued_at,
        "exp": c.expires_at,
        "case": c.case_id,
        "cust": c.customer_id,
        "ch": c.channel,
        "int": c.intent,
        "f": dict(sorted(c.fields.items())),
        "s": sorted(c.sensitive_fields),
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def claims_from_json(raw: bytes, key_id: str) -> Continuation:
    """The claims of a payload (``MalformedToken`` if it is not valid)."""
    try:
        doc = json.loads(raw)
        claims = Continuation(
            token_id=_typed(doc["jti"], str),
            case_id=_typed(doc["case"], str),
            customer_id=_typed(doc["cust"], str),
            channel=cast(Channel, _typed(doc["ch"], str)),
            intent=None if doc["int"] is None else _typed(doc["int"], str),
            fields=dict(_typed(doc["f"], dict)),
            sensitive_fields=frozenset(_typed(doc["s"], list)),
            issued_at=_typed(doc["iat"], int),
            expires_at=_typed(doc["exp"], int),
            key_id=key_id,
        )
        check_claims(claims)
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedToken(f"continuation token payload is invalid: {exc}") from exc
    return claims


def _typed(value: object, kind: type[_T]) -> _T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value
