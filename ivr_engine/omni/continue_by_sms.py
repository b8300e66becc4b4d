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
``continuation.link``. Only subscriptions with ``continuation_links: true`` (never ``*``
ones) get that form; every other subscriber of the event gets it as stored.

The relay signs only what the engine issued. Anyone who can write a timeline event (an API
client, another tool) can write a ``message.outbound`` event shaped like this one, so the
event also carries a ``seal``: an HMAC, with a key derived from the signing key, of the
event id, the ``to`` number and the unsigned token. Event ids are unique on the timeline,
so a seal cannot be moved to another event or number; the relay refuses to sign an event
without a valid seal (it is delivered as stored, link elided). The link's base is the
configured ``public_url``, never text from the event. ``POST /v1/events`` also refuses the
shape outright (``message.outbound`` with ``data.continuation``).

The customer texted is the caller's, by the call recorder's rule
(``call_customers.customer_for_phone``): a number shared by several customers is not
guessed at, and gets a new customer without identities (not one more owner of the number).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from crm_bridge.continuation import ContinuationTokens
from crm_bridge.continuation_errors import ContinuationError
from crm_bridge.continuation_wire import Keyring, sign_unsigned, unsigned_part
from crm_bridge.webhooks.fan_out import OutboundEvent, Tailored
from crm_bridge.webhooks.subscriptions import Subscription
from crm_bridge.webhooks.timeline_payload import outbound_event
from ivr_engine.flows.call_customers import customer_for_phone
from ivr_engine.flows.call_record import CallRecord
from ivr_engine.ports import NewTimelineEvent, StoredEvent, TimelineStore

log = logging.getLogger(__name__)
CONTINUE_SMS_EVENT = "message.outbound"
SMS_TEXT = "Continue your conversation here: {link}"
ELIDED = "\N{HORIZONTAL ELLIPSIS}"  # in place of the token on the timeline
_SEAL_KEY_CONTEXT = b"seed continue-by-sms relay seal v1"


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
        customer_id = record.customer_id or await customer_for_phone(self._store, record.phone)
        key = record.call.call_key  # per call: two switches' calls may share a uniqueid
        case_id = record.case_id or f"case-{uuid.uuid5(uuid.NAMESPACE_URL, key)}"
        token = self._tokens.issue(
            case_id=case_id,
            customer_id=customer_id,
            channel="chat",
            intent=record.intent,
            collected=dict(record.entered),
            clear=self._clear,
        )
        claims = self._tokens.inspect(token)
        event_id = f"voice:{key}:continue-sms"
        unsigned = unsigned_part(token)
        seal = continuation_seal(self._tokens.keyring, event_id, record.phone, unsigned)
        assert seal is not None  # signed with the keyring's current key just now
        event = NewTimelineEvent(
            event_id=event_id,
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
                    "unsigned": unsigned,
                    "seal": seal,
                },
            },
        )
        await self._store.append_events([event])  # webhooks: the relay tails the timeline
        record.customer_id, record.case_id = customer_id, case_id
        return case_id


def continuation_seal(keyring: Keyring, event_id: str, to: str, unsigned: str) -> str | None:
    """The seal of a continue-by-SMS event: HMAC-SHA256, with a key derived from the key
    that signs ``unsigned``, of the event id, the number texted and the unsigned token. Not
    a credential (it signs no token); None when that key is not in ``keyring``."""
    parts = unsigned.split(".")
    key = keyring.get(parts[1]) if len(parts) == 3 else None
    if key is None:
        return None
    seal_key = hmac.new(key.secret, _SEAL_KEY_CONTEXT, hashlib.sha256).digest()
    sealed = json.dumps([event_id, to, unsigned], separators=(",", ":")).encode("utf-8")
    mac = hmac.new(seal_key, sealed, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def with_sms_links(
    keyring: Keyring, public_url: str
) -> Callable[[StoredEvent], OutboundEvent | Tailored]:
    """The webhook form of timeline events (``outbound_event``), where a continue-by-SMS
    event that the engine issued (its seal checks out) gets its working link back for the
    subscriptions with ``continuation_links``: signed again with ``keyring``, on
    ``public_url``, in ``data.text`` and ``data.continuation.link`` (the unsigned token and
    the seal are left out). Other subscribers get the event as stored."""
    base = f"{public_url.rstrip('/')}/c/"

    def render(event: StoredEvent) -> OutboundEvent | Tailored:
        public = outbound_event(event)
        if event.event_type != CONTINUE_SMS_EVENT:
            return public
        linked = _linked(event, keyring, base)
        if linked is None:
            return public
        kind, payload, event_id, at = public
        private: OutboundEvent = (kind, {**payload, "data": linked}, event_id, at)

        def tailor(subscription: Subscription) -> OutboundEvent:
            return private if subscription.continuation_links else public

        return Tailored(public, tailor)

    return render


def _linked(event: StoredEvent, keyring: Keyring, base: str) -> dict[str, Any] | None:
    """The event's ``data`` with the link signed; None when it carries no continuation the
    engine issued."""
    data = event.data
    if not isinstance(data.get("continuation"), Mapping):
        return None
    stored = dict(data["continuation"])
    unsigned, seal = stored.pop("unsigned", None), stored.pop("seal", None)
    stored.pop("link_base", None)  # written by earlier versions; the base is ours
    to = data.get("to")
    if not isinstance(unsigned, str) or not isinstance(to, str):
        return None
    expected = continuation_seal(keyring, event.event_id, to, unsigned)
    if (
        not isinstance(seal, str)
        or expected is None
        or not hmac.compare_digest(seal.encode("utf-8"), expected.encode("ascii"))
    ):
        log.warning(
            "continue-by-SMS: event %r carries a continuation the engine did not issue "
            "(no valid seal): delivered without a link",
            event.event_id,
        )
        return None
    try:
        link = base + sign_unsigned(unsigned, keyring)
    except ContinuationError as exc:  # a key since retired: the link could not work anyway
        log.warning("continue-by-SMS: cannot sign the link of token %s: %s", stored, exc)
        return None
    return {**data, "text": SMS_TEXT.format(link=link), "continuation": {**stored, "link": link}}
