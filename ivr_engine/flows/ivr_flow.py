"""One call, top to bottom: identify → history → decide → collect → route → record.

The flow imports no infrastructure: it talks to the call through ``CallChannel``, to the
timeline through ``CallerLookup`` and hands the finished record to a ``CallSink``.
Error policy: lookups fail open (static menu within the decision deadline, call goes on);
a caller hanging up at any point is the outcome ``abandoned``, never an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from ivr_engine.domain.errors import CallerHungUp, IvrEngineError, TimelineUnavailable
from ivr_engine.domain.models import (
    CallerHistory,
    CallOutcome,
    CountryCodeWithoutPlus,
    IdentifiedBy,
    KnownField,
    Menu,
    MenuDecision,
    MenuOption,
)
from ivr_engine.flows import variables
from ivr_engine.flows.call_record import CALL_KEY_VARIABLE, CallRecord, IncomingCall, RouteResult
from ivr_engine.flows.field_collection import FieldCollector
from ivr_engine.flows.speech_choice import SpeechListener
from ivr_engine.identity import normalize_caller_id
from ivr_engine.personalize import (
    decide_menu,
    interpret_menu_choice,
    interpret_shortcut,
    menu_prompt_sequence,
    pinned_choice,
    shortcut_prompt_sequence,
    static_menu,
)
from ivr_engine.ports import CallChannel, CallerLookup, LookupResult

log = logging.getLogger(__name__)


class CallSink(Protocol):
    def submit(self, record: CallRecord) -> None:
        """Take a finished call; must not block (the recorder writes in the background)."""
        ...


class CallRouter(Protocol):
    async def route(
        self,
        record: CallRecord,
        known_fields: Mapping[str, KnownField],
        exclude: frozenset[str] = frozenset(),
        waiting_since: datetime | None = None,
    ) -> RouteResult:
        """Pick the agent (reserved for this call) or the overflow target; never raises for
        an unavailable agent store (it overflows to the intent's own target instead).
        ``waiting_since``: when the caller started waiting for an agent (a reroute); None:
        now (distrusted when in the future or implausibly long ago: now, too)."""
        ...

    async def release(self, call_id: str, agent_id: str) -> None:
        """Give back the agent ``route`` reserved for a call that will not dial them (the
        caller hung up first); best effort, never raises."""
        ...


class SmsContinuation(Protocol):
    def can_continue(self, record: CallRecord) -> bool: ...

    async def continue_on_sms(self, record: CallRecord) -> str:
        """Send the caller a link to continue this call's case in chat; the case id."""
        ...


CONTINUE_KEY = "*"
CALLER_WITHHELD = "caller withheld their number: default order"
MAX_WARNED_MENU_NAMES = 64  # distinct unknown menu names logged (the name comes off the wire)


class IvrFlow:
    def __init__(
        self,
        *,
        menus: Mapping[str, Menu],
        lookup: CallerLookup,
        sink: CallSink,
        clock: Callable[[], datetime],
        decision_deadline_s: float = 0.150,
        default_region: str = "US",
        country_code_without_plus: CountryCodeWithoutPlus = "auto",
        router: CallRouter | None = None,
        continuation: SmsContinuation | None = None,
        continue_deadline_s: float = 1.5,
        use_withheld_caller_id: bool = False,
        speech: SpeechListener | None = None,
    ) -> None:
        self._menus = menus
        self._lookup = lookup
        self._sink = sink
        self._clock = clock
        self._deadline_s = decision_deadline_s
        self._region = default_region
        self._without_plus: CountryCodeWithoutPlus = country_code_without_plus
        self._router = router
        self._continuation = continuation
        self._continue_deadline_s = continue_deadline_s
        self._use_withheld = use_withheld_caller_id
        self._unknown_menus: set[str] = set()
        self._speech = speech
        self._fields = FieldCollector(lookup, decision_deadline_s)

    def menu_for(self, name: str) -> Menu:
        """The menu the dialplan asked for; an unknown name (a typo in the dialplan, a menu
        file removed) plays ``main``, or the first menu, and says so once per name."""
        menu = self._menus.get(name)
        if menu is not None:
            return menu
        fallback = self._menus.get("main") or next(iter(self._menus.values()))
        if name not in self._unknown_menus and len(self._unknown_menus) < MAX_WARNED_MENU_NAMES:
            self._unknown_menus.add(name)
            log.warning(
                "menu %r is not loaded (loaded: %s): playing %r instead",
                name,
                ", ".join(sorted(self._menus)),
                fallback.name,
            )
        return fallback

    async def run(self, call: IncomingCall, channel: CallChannel) -> CallRecord:
        menu = self.menu_for(call.menu)
        phone = None if self._ignores_caller_id(call) else call.caller_id
        caller = normalize_caller_id(phone, self._region, self._without_plus)
        record = CallRecord(call=call, phone=caller)
        try:
            history, decision = await self._identify_and_decide(menu, record)
            if call.received:  # the first prompt command goes out next
                record.first_prompt_ms = round((time.perf_counter() - call.received) * 1000, 3)
            intent = await self._choose_intent(channel, menu, decision, record)
            if intent is None and await self._continue_by_sms(channel, menu, record):
                return record
            intent = intent or menu.fallback_intent
            option = menu.option(intent) or menu.option(menu.fallback_intent)
            assert option is not None  # config validation guarantees the fallback exists
            record.intent, record.target = option.intent, option.target
            history = await self._fields.collect(channel, menu, option, history, record)
            await self._route(channel, option, decision, history, record)
        except CallerHungUp:
            record.outcome = CallOutcome.ABANDONED
            record.step("hangup")
        finally:
            record.ended_at = self._clock()
            self._sink.submit(record)
        return record

    # ------------------------------------------------------------------ identify + decide

    async def _identify_and_decide(
        self, menu: Menu, record: CallRecord
    ) -> tuple[CallerHistory | None, MenuDecision]:
        started = time.perf_counter()
        if self._ignores_caller_id(record.call):  # an account number entered still identifies
            return self._decided(record, None, static_menu(menu, CALLER_WITHHELD), started)
        try:
            async with asyncio.timeout(self._deadline_s):
                result = await self._lookup_phone(menu, record.phone)
        except (TimeoutError, TimelineUnavailable) as exc:
            reason = _unavailable_reason(exc, self._deadline_s)
            log.warning("call %s: %s; static menu", record.call.call_id, reason)
            record.lookup_failed = True
            decision = static_menu(menu, reason)
            return self._decided(record, None, decision, started)
        history = result.history
        if history is not None:
            record.customer_id = history.customer_id
            record.identified_by = IdentifiedBy.CALLER_ID
        decision = decide_menu(menu, history, self._clock())
        if result.ambiguous:
            decision = static_menu(menu, "caller ID is shared by several customers")
        return self._decided(record, history, decision, started)

    def _ignores_caller_id(self, call: IncomingCall) -> bool:
        """A withheld number is not used to find the caller (``use_withheld_caller_id``)."""
        return call.caller_withheld and not self._use_withheld

    async def _lookup_phone(self, menu: Menu, phone: str | None) -> LookupResult:
        if phone is None:
            return LookupResult(history=None)
        return await self._lookup.lookup("phone", phone, max_events=menu.ranking.max_events)

    @staticmethod
    def _decided(
        record: CallRecord,
        history: CallerHistory | None,
        decision: MenuDecision,
        started: float,
    ) -> tuple[CallerHistory | None, MenuDecision]:
        record.decision = decision
        record.decision_ms = round((time.perf_counter() - started) * 1000, 3)
        return history, decision

    # ------------------------------------------------------------------ menu

    async def _choose_intent(
        self, channel: CallChannel, menu: Menu, decision: MenuDecision, record: CallRecord
    ) -> str | None:
        """The chosen intent; None when the caller pressed the continue-by-SMS key."""
        greeting = True
        offer = decision.shortcut
        if offer is not None:
            prompts = shortcut_prompt_sequence(offer, menu.prompts, greeting=True)
            reply = await channel.read_digits(prompts, menu.input_timeout_ms, 1)
            accepted = interpret_shortcut(offer, reply.digits)
            record.step("shortcut", intent=offer.intent, digits=reply.digits, accepted=accepted)
            if accepted:
                if offer.continue_case is not None:
                    record.case_id = offer.continue_case
                    record.step("continued", case=offer.continue_case)
                return offer.intent
            pinned = None if accepted is False else pinned_choice(decision, reply.digits)
            if pinned is not None:
                record.step("pinned_key", digit=reply.digits[:1], intent=pinned)
                return pinned
            greeting = False
        lead_in: tuple[str, ...] = ()
        offer_sms = self._continuation is not None and self._continuation.can_continue(record)
        tail = (menu.prompts.continue_sms_offer,) if offer_sms else ()
        speech = self._speech if menu.speech.enabled else None
        say = (menu.speech.prompt,) if speech is not None else ()
        wait_ms = menu.speech.key_wait_ms if speech is not None else menu.input_timeout_ms
        for attempt in range(1, menu.attempts + 1):
            prompts = lead_in + menu_prompt_sequence(decision, menu.prompts, greeting=greeting)
            digits = (await channel.read_digits(prompts + say + tail, wait_ms, 1)).digits
            if speech is not None and not digits:
                listened = await speech.listen(channel, menu, record, attempt)
                if listened.intent is not None and menu.option(listened.intent) is not None:
                    record.step("menu", attempt=attempt, said=True, intent=listened.intent)
                    return listened.intent
                digits = listened.key or ""
            if offer_sms and digits == CONTINUE_KEY:
                record.step("menu", attempt=attempt, digits=digits, intent=None)
                return None
            intent = interpret_menu_choice(decision, digits)
            record.step("menu", attempt=attempt, digits=digits, intent=intent)
            if intent is not None:
                return intent
            lead_in = (menu.prompts.invalid if digits else menu.prompts.no_input,)
            greeting = False
        record.step("menu_exhausted", intent=menu.fallback_intent)
        return menu.fallback_intent

    async def _continue_by_sms(self, channel: CallChannel, menu: Menu, record: CallRecord) -> bool:
        """Send the link and end the call; False (the caller is routed as usual) on failure,
        or when the timeline has not taken the SMS within ``continue_deadline_s`` (the caller
        hears nothing meanwhile)."""
        assert self._continuation is not None
        try:
            async with asyncio.timeout(self._continue_deadline_s):
                case_id = await self._continuation.continue_on_sms(record)
        except (IvrEngineError, TimeoutError) as exc:
            log.warning("call %s: continue by SMS failed (%r); routing", record.call.call_id, exc)
            record.step("continue_sms_failed")
            return False
        record.step("continued_by_sms", case=case_id)
        record.outcome = CallOutcome.CONTINUED  # the link is sent: the call ends so, whatever
        channel.keep_outcome()  # comes next (a stop's grace ending: not told failed)
        await channel.set_variables(
            {
                variables.CASE_ID: case_id,
                variables.CUSTOMER_ID: record.customer_id or "",
                variables.OUTCOME: CallOutcome.CONTINUED.value,
            }
        )
        return True

    # ------------------------------------------------------------------ fields

    # ------------------------------------------------------------------ route

    async def _route(
        self,
        channel: CallChannel,
        option: MenuOption,
        decision: MenuDecision,
        history: CallerHistory | None,
        record: CallRecord,
    ) -> None:
        kind = "personalised" if decision.personalised else "static"
        target = option.target
        values: dict[str, str] = {}
        if self._router is not None:
            known = history.known_fields if history is not None else {}
            routing = await self._router.route(record, known)
            record.routing = routing
            record.step("routed", target=routing.target, agent=routing.agent_id)
            target = routing.target if routing.agent_id is None else option.target
            values[variables.AGENT_ID] = routing.agent_id or ""
            values[variables.AGENT_ENDPOINT] = routing.endpoint or ""
            if routing.agent_id is not None:
                ring_s = routing.ring_timeout_s
                values[variables.RING_TIMEOUT] = variables.ring_timeout_value(ring_s)
            values[variables.WAIT_START] = variables.wait_start_value(self._clock())
            values[CALL_KEY_VARIABLE] = record.call.call_key
        values[variables.INTENT] = option.intent
        values[variables.TARGET] = target
        values[variables.CUSTOMER_ID] = record.customer_id or ""
        if record.case_id is not None:
            values[variables.CASE_ID] = record.case_id
        values[variables.DECISION] = kind
        values[variables.VERIFIED] = "1" if record.verified else "0"
        values[variables.OUTCOME] = CallOutcome.ROUTED.value  # last: the dialplan keys on it
        try:
            await channel.set_variables(values)
        except BaseException:  # hung up (or stopped): the dialplan will not dial the agent
            agent_id = record.routing.agent_id if record.routing is not None else None
            if self._router is not None and agent_id is not None:
                await self._router.release(record.call.call_id, agent_id)
                record.step("agent_released", agent=agent_id)
            raise
        record.outcome = CallOutcome.ROUTED


def _unavailable_reason(exc: BaseException, deadline_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeline lookup exceeded the {deadline_s * 1000:.0f} ms decision deadline"
    return f"timeline unavailable: {exc}"
