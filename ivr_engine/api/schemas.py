"""Request validation: strict pydantic v2 models, bounded everywhere, hostile-input safe.

Bodies are parsed by pydantic's own JSON parser (``model_validate_json``): invalid JSON,
nesting deeper than its recursion limit, non-objects, wrong types and unknown keys all
become a 400 naming the field path, never a 500. Identities are normalised here, with the
app's default region, so handlers only ever see E.164 phones and lower-case e-mails.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Self, TypeVar, get_args

from aiohttp import web
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ivr_engine.api.body_time import late_body_message, read_in_time
from ivr_engine.api.errors import ApiError, bad_request, from_validation_error
from ivr_engine.api.keys import (
    BODY_TIMEOUT_S,
    COUNTRY_CODE_WITHOUT_PLUS,
    DEFAULT_REGION,
    MAX_BODY_BYTES,
)
from ivr_engine.api.plain_fields import PLAIN
from ivr_engine.domain.models import Channel, CountryCodeWithoutPlus, IdentityKind
from ivr_engine.identity import InvalidIdentity, normalize_identity
from ivr_engine.personalize.ranking import FUTURE_SKEW

_CUSTOMER_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,36}$")
_FIELD_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

CustomerId = Annotated[str, StringConstraints(pattern=_CUSTOMER_ID_RE.pattern)]
FieldName = Annotated[str, StringConstraints(pattern=_FIELD_NAME_RE.pattern)]
FieldValue = Annotated[str, StringConstraints(min_length=1, max_length=256), PLAIN]
DisplayName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), PLAIN
]
EventId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,200}$")]
EventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.\-]{0,63}$")]
Intent = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
CaseId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,64}$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500), PLAIN]
IdentityValue = Annotated[str, StringConstraints(min_length=1, max_length=320)]
MenuName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]

MAX_DATA_BYTES = 16 * 1024
MAX_DATA_DEPTH = 8
MAX_FIELDS = 32

M = TypeVar("M", bound=BaseModel)


def _reading(info: ValidationInfo) -> tuple[str, CountryCodeWithoutPlus]:
    """The region and the country-code rule phone identities are read with (caller IDs'),
    from the validation context (``_context``)."""
    context = info.context if isinstance(info.context, dict) else {}
    region = context.get("default_region", "US")
    without_plus = context.get("country_code_without_plus", "auto")
    if without_plus not in get_args(CountryCodeWithoutPlus):
        without_plus = "auto"
    return (region if isinstance(region, str) else "US"), without_plus


def _normalise(kind: str, value: str, info: ValidationInfo) -> str:
    try:
        return normalize_identity(kind, value, *_reading(info))
    except InvalidIdentity as exc:
        raise ValueError(str(exc)) from None


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Query(BaseModel):
    """Query strings are text: numbers are parsed (lax), unknown parameters rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentityIn(_Body):
    kind: IdentityKind
    value: IdentityValue

    @field_validator("value")
    @classmethod
    def _normalised(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        return value if kind is None else _normalise(kind, value, info)


class CreateCustomer(_Body):
    display_name: DisplayName | None = None
    identities: list[IdentityIn] = Field(min_length=1, max_length=20)
    fields: dict[FieldName, FieldValue] = Field(default_factory=dict, max_length=MAX_FIELDS)
    source_channel: Channel = "web"  # the channel recorded as the source of ``fields``


class UpdateCustomer(_Body):
    display_name: DisplayName | None


class MergeRequest(_Body):
    source_customer_id: CustomerId
    reason: Reason


class PutField(_Body):
    value: FieldValue
    source_channel: Channel
    verified: bool = False


class EventIn(_Body):
    event_id: EventId
    customer_id: CustomerId | None = None
    identity: IdentityIn | None = None
    channel: Channel
    event_type: EventType
    occurred_at: AwareDatetime | None = None
    intent: Intent | None = None
    case_id: CaseId | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    fields: dict[FieldName, FieldValue] = Field(default_factory=dict, max_length=MAX_FIELDS)

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range") from None

    @field_validator("data")
    @classmethod
    def _bounded(cls, data: dict[str, Any]) -> dict[str, Any]:
        _check_json_value(data)
        try:
            size = len(json.dumps(data, ensure_ascii=False, allow_nan=False).encode())
        except ValueError:
            raise ValueError("NaN and Infinity are not JSON numbers") from None
        if size > MAX_DATA_BYTES:
            raise ValueError(f"{size} bytes as JSON; at most {MAX_DATA_BYTES}")
        return data

    @model_validator(mode="after")
    def _one_subject(self) -> Self:
        if (self.customer_id is None) == (self.identity is None):
            raise ValueError("give exactly one of customer_id or identity")
        return self

    @model_validator(mode="after")
    def _not_a_continuation(self) -> Self:
        if self.event_type == "message.outbound" and "continuation" in self.data:
            raise ValueError(
                "message.outbound with data.continuation is reserved for the engine's "
                "continue-by-SMS (it issues the links itself); leave out data.continuation"
            )
        return self


class LookupQuery(_Query):
    phone: IdentityValue | None = None
    email: IdentityValue | None = None
    kind: IdentityKind | None = None
    value: IdentityValue | None = None

    @field_validator("phone", "email")
    @classmethod
    def _normalised(cls, value: str | None, info: ValidationInfo) -> str | None:
        assert info.field_name is not None
        return None if value is None else _normalise(info.field_name, value, info)

    @field_validator("value")
    @classmethod
    def _value_normalised(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        return value if value is None or kind is None else _normalise(kind, value, info)

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        forms = [self.phone is not None, self.email is not None, self.kind is not None]
        if sum(forms) != 1 or (self.kind is None) != (self.value is None):
            raise ValueError("give exactly one of phone=, email= or kind= with value=")
        return self

    def identity(self) -> tuple[str, str]:
        if self.phone is not None:
            return "phone", self.phone
        if self.email is not None:
            return "email", self.email
        assert self.kind is not None and self.value is not None
        return self.kind, self.value


class TimelineQuery(_Query):
    limit: int = Field(50, ge=1, le=200)
    before: int | None = Field(None, ge=1, le=2**62)


class PreviewQuery(_Query):
    phone: IdentityValue | None = None
    customer_id: CustomerId | None = None
    menu: MenuName = "main"

    @field_validator("phone")
    @classmethod
    def _normalised(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _normalise("phone", value, info)

    @model_validator(mode="after")
    def _one_subject(self) -> Self:
        if (self.phone is None) == (self.customer_id is None):
            raise ValueError("give exactly one of phone= or customer_id=")
        return self


def check_not_ahead(occurred_at: datetime | None, now: datetime) -> None:
    """400 for an ``occurred_at`` further ahead of ``now`` than ``FUTURE_SKEW``: the menu
    ranking ignores such an event, yet it would head the customer's timeline until then."""
    if occurred_at is not None and occurred_at > now + FUTURE_SKEW:
        minutes = int(FUTURE_SKEW.total_seconds() // 60)
        raise bad_request("occurred_at", f"more than {minutes} minutes in the future")


# --------------------------------------------------------------------------- parsing


async def parse_body(request: web.Request, model: type[M]) -> M:
    """Read, size-check, decode and validate a JSON body into ``model``.

    The body must arrive in time (408; ``body_time.read_in_time``, from ``BODY_TIMEOUT_S``): a
    stalled one, a drip, or a malformed chunk in a later TCP segment than the headers
    (aiohttp's C parser never passes that error on to the body), would otherwise hold the
    handler until the client hangs up."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    limit, timeout_s = request.app[MAX_BODY_BYTES], request.app[BODY_TIMEOUT_S]
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"the body exceeds {limit} bytes")
    try:  # aiohttp enforces client_max_size while reading
        raw = await read_in_time(request, request.read(), timeout_s)
    except TimeoutError:
        message = late_body_message(timeout_s)
        raise ApiError(408, "body_timeout", message) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding", "the body is not valid UTF-8") from None
    try:
        return model.model_validate_json(text, context=_context(request))
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def parse_query(request: web.Request, model: type[M]) -> M:
    query = request.query
    repeated = sorted({key for key in query if len(query.getall(key)) > 1})
    if repeated:
        raise bad_request(repeated[0], "given more than once")
    try:
        return model.model_validate(dict(query), context=_context(request))
    except ValidationError as exc:
        raise from_validation_error(exc, "query") from None


def customer_id_param(request: web.Request, name: str = "id") -> str:
    """The customer id in the path; a malformed one cannot exist, so it is a 404."""
    value = request.match_info[name]
    if not _CUSTOMER_ID_RE.fullmatch(value):
        raise ApiError(404, "customer_not_found", "customer not found")
    return value


def field_name_param(request: web.Request) -> str:
    value = request.match_info["name"]
    if not _FIELD_NAME_RE.fullmatch(value):
        raise bad_request("name", "field names are lower-case letters, digits and _")
    return value


def _context(request: web.Request) -> dict[str, Any]:
    return {
        "default_region": request.app[DEFAULT_REGION],
        "country_code_without_plus": request.app[COUNTRY_CODE_WITHOUT_PLUS],
    }


def _check_json_value(value: Any) -> None:
    """At most ``MAX_DATA_DEPTH`` nested arrays/objects and no NUL in any string (PostgreSQL
    JSONB refuses ``\\u0000``); iterative, so hostile nesting cannot exhaust the stack."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            raise ValueError("strings must not contain NUL characters")
        if isinstance(item, dict | list):
            if level > MAX_DATA_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DATA_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
