"""Continue by SMS: the caller presses the continue key during the menu; the engine issues a
short-lived, single-use, signed continuation token for the call's case and emits the outbound
SMS event (with the link) on the timeline; opening the link in chat redeems the token and
resumes the same case (``POST /v1/continuations/redeem``).

The SMS itself is sent by whatever consumes ``message.outbound`` events on channel ``sms``
(an SMS gateway webhook subscriber): the engine writes the event, idempotently per call,
and the webhook relay delivers it once committed.
Sensitive fields travel by name only (see ``crm_bridge.continuation``).

The link is a bearer credential (whoever redeems it first resumes the case as the caller),
so the timeline never holds it: every API-token holder, timeline-page user and ``*``
webhook subscriber reads the timeline. The event holds the link's token id, expiry and
*unsigned* token (``c1.kid.payload``, useless without the signing key) and a text whose
link is elided; the engine's webhook relay signs it again at delivery (``with_sms_links``),
so the SMS gateway's delivery carries the working link in ``text`` and
``continuation.link``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from crm_bridge.continuation import ContinuationTokens
from crm_bridge.continuation_errors import ContinuationError
from crm_bridge.continuation_wire import Keyring, sign_unsigned, unsigned_part
from crm_bridge.webhooks.fan_out import OutboundEvent
from crm_bridge.webhooks.timeline_payload import outbound_event
from ivr_engine.flows.call_record import CallRecord
from ivr_engine.ports import Identity, NewTimelineEvent, StoredEvent, TimelineStore

log = logging.getLogger(__name__)
CONTINUE_SMS_EVENT = "message.outbound"
SMS_TEXT = "Continue your conversation here: {link}"
ELIDED = "\N{HORIZONTAL ELLIPSIS}"  # in place of the token on the timeline


class SmsContinuer:
    def __init__(
        self,
        tokens: ContinuationTokens,
        store: TimelineStore,
        *,
        public_url: str,
        clear_fields: Collection[str],
        clock: Callable[[], datetime],
    ) -> None:
        self._tokens = tokens
        self._store = store
        self._base = public_url.rstrip("/")
        self._clear = frozenset(clear_fields)
        self._clock = clock

    def use_clear_fields(self, clear_fields: Collection[str]) -> None:
        """The fields a continuation link may show in clear, by the menus now in force."""
        self._clear = frozenset(clear_fields)

    def can_continue(self, record: CallRecord) -> bool:
        return record.phone is not None  # a number to text

    async def continue_on_sms(self, record: CallRecord) -> str:
        """Issue the token, write the outbound SMS event; returns the case id."""
        assert record.phone is not None
        customer_id = record.customer_id or await self._store.create_customer_for_identity(
            Identity("phone", record.phone)
        )
        case_id = record.case_id or f"case-{uuid.uuid5(uuid.NAMESPACE_URL, record.call.call_id)}"
        token = self._tokens.issue(
            case_id=case_id,
            customer_id=customer_id,
            channel="chat",
            intent=record.intent,
            collected=dict(record.entered),
            clear=self._clear,
        )
        claims = self._tokens.inspect(token)
        event = NewTimelineEvent(
            event_id=f"voice:{record.call.call_id}:continue-sms",
            customer_id=customer_id,
            occurred_at=self._clock(),
            channel="sms",
            event_type=CONTINUE_SMS_EVENT,
            intent=record.intent,
            case_id=case_id,
            data={
                "to": record.phone,
                "text": SMS_TEXT.format(link=f"{self._base}/c/{ELIDED}"),
                "continuation": {
                    "token_id": claims.token_id,
                    "expires_at": datetime.fromtimestamp(claims.expires_at, UTC).isoformat(),
                    "link_base": f"{self._base}/c/",
                    "unsigned": unsigned_part(token),
                },
            },
        )
        await self._store.append_events([event])  # webhooks: the relay tails the timeline
        record.customer_id, record.case_id = customer_id, case_id
        return case_id


def with_sms_links(keyring: Keyring) -> Callable[[StoredEvent], OutboundEvent]:
    """The webhook form of timeline events (``outbound_event``), where a continue-by-SMS
    event gets its working link back: signed again with ``keyring``, in ``data.text`` and
    ``data.continuation.link`` (the unsigned token is left out)."""

    def render(event: StoredEvent) -> OutboundEvent:
        kind, payload, event_id, at = outbound_event(event)
        data = payload.get("data")
        linked = _linked(data, keyring) if event.event_type == CONTINUE_SMS_EVENT else None
        if linked is None:
            return kind, payload, event_id, at
        return kind, {**payload, "data": linked}, event_id, at

    return render


def _linked(data: object, keyring: Keyring) -> dict[str, Any] | None:
    """``data`` with the link signed; None when it carries no unsigned continuation."""
    if not isinstance(data, Mapping) or not isinstance(data.get("continuation"), Mapping):
        return None
    stored = dict(data["continuation"])
    unsigned, base = stored.pop("unsigned", None), stored.pop("link_base", None)
    if not isinstance(unsigned, str) or not isinstance(base, str):
        return None
    try:
        link = base + sign_unsigned(unsigned, keyring)
    except ContinuationError as exc:  # a key since retired: the link could not work anyway
        log.warning("continue-by-SMS: cannot sign the link of token %s: %s", stored, exc)
        return None
    return {**data, "text": SMS_TEXT.format(link=link), "continuation": {**stored, "link": link}}
