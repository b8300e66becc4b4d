"""Continue by SMS: the caller presses the continue key during the menu; the engine issues a
short-lived, single-use, signed continuation token for the call's case and emits the outbound
SMS event (with the link) on the timeline; opening the link in chat redeems the token and
resumes the same case (``POST /v1/continuations/redeem``).

The SMS itself is sent by whatever consumes ``message.outbound`` events on channel ``sms``
(an SMS gateway webhook subscriber): the engine writes the event, idempotently per call,
and the webhook relay delivers it once committed.
Sensitive fields travel by name only (see ``crm_bridge.continuation``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import datetime

from crm_bridge.continuation import ContinuationTokens
from ivr_engine.flows.call_record import CallRecord
from ivr_engine.ports import Identity, NewTimelineEvent, TimelineStore

CONTINUE_SMS_EVENT = "message.outbound"


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
        link = f"{self._base}/c/{token}"
        event = NewTimelineEvent(
            event_id=f"voice:{record.call.call_id}:continue-sms",
            customer_id=customer_id,
            occurred_at=self._clock(),
            channel="sms",
            event_type=CONTINUE_SMS_EVENT,
            intent=record.intent,
            case_id=case_id,
            data={"to": record.phone, "text": f"Continue your conversation here: {link}"},
        )
        await self._store.append_events([event])  # webhooks: the relay tails the timeline
        record.customer_id, record.case_id = customer_id, case_id
        return case_id
