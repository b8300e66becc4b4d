"""Text-channel messages and conversations: request models and response shapes.

The customer's side of a message (``from`` inbound, ``to`` outbound) is an identity of the
channel's kind (SMS → phone in E.164, e-mail → lower-case address, chat and messenger →
trimmed handle), normalised here with the app's default region; the contact centre's own
side is kept as sent. Rules that span several fields (which side is required, subject only
on e-mail) are checked by ``check_message`` so the 400 names the field, not ``body``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from typing_extensions import TypedDict

from ivr_engine.api.errors import bad_request
from ivr_engine.api.plain_fields import PLAIN
from ivr_engine.api.schemas import (
    CaseId,
    CustomerId,
    Intent,
    Reason,
    _Body,
    _normalise,
    _Query,
    check_not_ahead,
)
from ivr_engine.api.serialize import EventJson
from ivr_engine.personalize.cases import CaseState

TextChannel = Literal["chat", "email", "sms", "messenger"]
Direction = Literal["inbound", "outbound"]

# Whose identity a message on each channel carries.
CHANNEL_IDENTITY: Final[dict[str, str]] = {
    "sms": "phone",
    "email": "email",
    "chat": "chat",
    "messenger": "messenger",
}
MAX_TEXT_CHARS: Final = 16_000  # stays well inside the body cap and PostgreSQL JSONB
MAX_SUBJECT_CHARS: Final = 998  # RFC 5322 line limit

# Text (a body) may hold line breaks and tabs; no other C0 control (and never NUL). The
# single-line fields (addresses, subject) are ``PLAIN``: no control, separator or bidi override.
_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

MessageId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]
Address = Annotated[str, StringConstraints(min_length=1, max_length=320), PLAIN]
MessageText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS, pattern=_TEXT)
]
Subject = Annotated[str, StringConstraints(max_length=MAX_SUBJECT_CHARS), PLAIN]
AgentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]  # as desktop


class MessageIn(_Body):
    """One message; ``message_id`` is the client's idempotency key (per channel)."""

    message_id: MessageId
    channel: TextChannel
    direction: Direction
    from_: Address | None = Field(None, alias="from")
    to: Address | None = None
    customer_id: CustomerId | None = None
    conversation_id: CaseId | None = None
    text: MessageText
    subject: Subject | None = None
    intent: Intent | None = None
    agent_id: AgentId | None = None
    occurred_at: AwareDatetime | None = None

    @field_validator("from_", "to")
    @classmethod
    def _customer_side_normalised(cls, value: str | None, info: ValidationInfo) -> str | None:
        channel, direction = info.data.get("channel"), info.data.get("direction")
        if value is None or channel is None or direction is None:
            return value
        customer_side = "from_" if direction == "inbound" else "to"
        if info.field_name != customer_side:  # the contact centre's own address: as sent
            if not value.strip():
                raise ValueError("must not be blank")
            return value.strip()
        return _normalise(CHANNEL_IDENTITY[channel], value, info)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain more than white space")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range") from None

    @property
    def customer_address(self) -> str | None:
        """The customer's normalised identity value (sender inbound, recipient outbound)."""
        return self.from_ if self.direction == "inbound" else self.to


def check_message(body: MessageIn, now: datetime) -> None:
    """The cross-field rules; each failure is a 400 naming the field."""
    side = "from" if body.direction == "inbound" else "to"
    if body.customer_address is None:
        raise bad_request(side, f"required for {body.direction} messages (the customer)")
    if body.subject is not None and body.channel != "email":
        raise bad_request("subject", "only e-mail messages have a subject")
    if body.agent_id is not None and body.direction != "outbound":
        raise bad_request("agent_id", "only outbound messages are sent by an agent")
    if body.direction == "outbound" and body.conversation_id is None and body.customer_id is None:
        raise bad_request(
            "conversation_id", "an outbound message names a conversation_id or a customer_id"
        )
    check_not_ahead(body.occurred_at, now)


class CloseIn(_Body):
    reason: Reason | None = None
    agent_id: AgentId | None = None


class ConversationQuery(_Query):
    limit: int = Field(50, ge=1, le=200)
    after: int | None = Field(None, ge=0, le=2**62)


# --------------------------------------------------------------------------- responses


class MessageResultJson(TypedDict):
    inserted: bool
    message_id: str
    event_id: str
    customer_id: str
    customer_created: bool
    conversation_id: str
    conversation_created: bool


class ConversationJson(TypedDict):
    conversation_id: str
    open: bool  # as the menu ranking sees it: state == "open"
    state: CaseState  # "open", "closed" (by case.closed) or "aged_out" (quiet too long)
    customer_ids: list[str]
    events: list[EventJson]  # oldest first (in the order the timeline recorded them)
    next_after: int | None  # pass as ``after`` for the next (newer) page


class CloseResultJson(TypedDict):
    conversation_id: str
    closed: bool
    inserted: bool  # false: it was already closed (a replay)
    customer_ids: list[str]


def message_data(body: MessageIn) -> dict[str, Any]:
    """The event's ``data``: every key always present, so readers see one shape."""
    return {
        "message_id": body.message_id,
        "text": body.text,
        "subject": body.subject,
        "from": body.from_,
        "to": body.to,
        "agent_id": body.agent_id,
    }
