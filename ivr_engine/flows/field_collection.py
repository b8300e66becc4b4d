"""The fields a chosen option needs: prefill what is known, ask the rest, check the answers.

Part of the call flow (``ivr_flow``): an account number keyed in identifies the caller
(``account`` identity lookup, within the decision deadline); a known sensitive field is
asked of an unverified caller and the answer checked against it (knowledge-based ID&V).
What was entered lands on the ``CallRecord``; nothing here writes to the timeline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.domain.models import (
    ACCOUNT_FIELD,
    ACCOUNT_IDENTITY,
    CallerHistory,
    FieldSpec,
    IdentifiedBy,
    KnownField,
    Menu,
    MenuOption,
)
from ivr_engine.flows.call_record import CallRecord
from ivr_engine.personalize import KnowledgeCheck, check_known_answer, plan_fields
from ivr_engine.ports import CallChannel, CallerLookup

log = logging.getLogger(__name__)


class FieldCollector:
    def __init__(self, lookup: CallerLookup, deadline_s: float) -> None:
        self._lookup = lookup
        self._deadline_s = deadline_s

    async def collect(
        self,
        channel: CallChannel,
        menu: Menu,
        option: MenuOption,
        history: CallerHistory | None,
        record: CallRecord,
    ) -> CallerHistory | None:
        """Ask the option's unknown fields; the caller's history to route with.

        An account number entered identifies the caller, even one the caller ID matched to
        another customer (a household's shared line; the account is the specific claim):
        the call and what was entered are stored under the account's customer, whose known
        fields spare the questions still to come and whose history (last agent, ...) routes.
        Neither identifies a *verified* caller: a sensitive field known for the customer is
        asked, and the answer checked against it (``_check_answer``). A wrong answer is asked
        again, after ``prompts.no_match``, up to ``menu.verification_attempts`` answers in
        all; then the call goes on unverified.
        """
        if record.case_id is not None:
            record.step("fields_skipped", reason=f"continuing case {record.case_id}")
            return history  # the case already holds what the customer told us on the other channel
        known = history.known_fields if history is not None else {}
        plan = plan_fields(option, menu.fields, known, caller_verified=record.verified)
        record.prefilled = sorted(plan.prefilled)
        if plan.prefilled:
            record.step("prefilled", fields=sorted(plan.prefilled))
        to_ask = list(plan.to_ask)
        answers: dict[str, str] = {}  # sensitive answers, checked again if the customer changes
        tries: dict[str, int] = {}  # sensitive answers given per field (wrong ones asked again)
        while to_ask:
            spec = to_ask.pop(0)
            lead_in = (menu.prompts.no_match,) if tries.get(spec.name) else ()
            value = await self._ask_field(channel, menu, spec, lead_in)
            record.step("asked", field=spec.name, answered=value is not None)
            if value is None:
                continue
            if spec.sensitive and spec.name != ACCOUNT_FIELD:  # an account number identifies
                answers[spec.name] = value
                tries[spec.name] = tries.get(spec.name, 0) + 1
                was_verified = record.verified
                check = self._check_answer(spec.name, value, known, record)
                if check is KnowledgeCheck.MATCHED and not was_verified:
                    to_ask = self._prefill_later(option, menu, known, to_ask, record, "verified")
                elif check is KnowledgeCheck.MISMATCHED:
                    to_ask = _ask_again([spec], tries, menu, to_ask)
                continue
            record.entered[spec.name] = value
            if spec.name != ACCOUNT_FIELD:
                continue
            found = await self._identify_by_account(menu, value, record)
            if found is None:
                continue
            history, known = found, found.known_fields
            wrong = self._check_again(answers, known, record)
            to_ask = self._prefill_later(option, menu, known, to_ask, record, "account_number")
            to_ask = _ask_again([menu.fields[n] for n in wrong], tries, menu, to_ask)
        return history

    @staticmethod
    def _check_answer(
        name: str, value: str, known: Mapping[str, KnownField], record: CallRecord
    ) -> KnowledgeCheck:
        """Check a sensitive answer against the customer's known value (knowledge-based ID&V);
        a match verifies the caller. A match is not saved again, a mismatch never
        overwrites the known value; only an answer with nothing to check against is saved,
        and not when the caller ID could not be looked up (the recorder would store it under
        the line's customer, unchecked). The path names the field, never the value."""
        check = check_known_answer(name, value, known)
        if check is KnowledgeCheck.NOT_KNOWN:
            if record.customer_id is None and record.lookup_failed:
                record.step("not_saved", field=name, reason="caller not looked up")
                return check  # the line's customer may well know it: never overwritten unchecked
            record.entered[name] = value
            return check
        if check is KnowledgeCheck.MISMATCHED:
            record.step("verification_failed", field=name)
            return check
        record.verified = True
        if name not in record.verified_by:
            record.verified_by.append(name)
        record.step("verified", field=name)
        return check

    def _check_again(
        self, answers: Mapping[str, str], known: Mapping[str, KnownField], record: CallRecord
    ) -> list[str]:
        """The call is now another customer's (an account number keyed in after a sensitive
        answer): what verified the caller, or was to be saved, counted for the first one.
        The fields whose answer is wrong for the new customer."""
        if not answers:
            return []
        if record.verified:
            record.verified = False
            record.verified_by.clear()
            record.step("verification_dropped", by="account_number")
        wrong = []
        for name, value in answers.items():
            record.entered.pop(name, None)
            if self._check_answer(name, value, known, record) is KnowledgeCheck.MISMATCHED:
                wrong.append(name)
        return wrong

    @staticmethod
    def _prefill_later(
        option: MenuOption,
        menu: Menu,
        known: Mapping[str, KnownField],
        to_ask: list[FieldSpec],
        record: CallRecord,
        by: str,
    ) -> list[FieldSpec]:
        """The questions still to come, less those now known (the customer changed, or the
        caller is now verified: a sensitive known field is then not asked either)."""
        later = plan_fields(option, menu.fields, known, caller_verified=record.verified)
        known_now = sorted(set(later.prefilled) & {s.name for s in to_ask})
        if not known_now:
            return to_ask
        record.prefilled = sorted({*record.prefilled, *known_now})
        record.step("prefilled", fields=known_now, by=by)
        return [s for s in to_ask if s.name not in known_now]

    async def _ask_field(
        self, channel: CallChannel, menu: Menu, spec: FieldSpec, lead_in: Sequence[str] = ()
    ) -> str | None:
        """The value the caller keyed in, checked by the field's own rule (``FieldSpec.accepts``:
        digits 0-9, ``min..max`` long; a ``*`` or ``A`` is no account number); an invalid or
        missing entry is asked again up to ``spec.attempts`` times, then None (never saved).
        ``lead_in``: played before the first question (``prompts.no_match``)."""
        for _ in range(spec.attempts):
            prompts = (*lead_in, spec.prompt)
            reply = await channel.read_digits(
                prompts, spec.timeout_ms, spec.max_digits, sensitive=spec.sensitive
            )
            if spec.accepts(reply.digits):
                return reply.digits
            lead_in = (menu.prompts.invalid if reply.digits else menu.prompts.no_input,)
        return None

    async def _identify_by_account(
        self, menu: Menu, account: str, record: CallRecord
    ) -> CallerHistory | None:
        try:
            async with asyncio.timeout(self._deadline_s):
                result = await self._lookup.lookup(
                    ACCOUNT_IDENTITY, account, max_events=menu.ranking.max_events
                )
        except (TimeoutError, TimelineUnavailable) as exc:
            log.warning("call %s: account lookup failed: %r", record.call.call_id, exc)
            return None
        found = result.history
        if found is None or found.customer_id == record.customer_id:
            return None
        if record.customer_id is not None:
            record.step("identified", by="account_number", caller_id_customer=record.customer_id)
        else:
            record.step("identified", by="account_number")
        record.customer_id = found.customer_id
        record.identified_by = IdentifiedBy.ACCOUNT_NUMBER
        return found


def _ask_again(
    wrong: Sequence[FieldSpec], tries: Mapping[str, int], menu: Menu, to_ask: list[FieldSpec]
) -> list[FieldSpec]:
    """The questions still to come, the fields answered wrong first while they have answers
    left (``menu.verification_attempts``); a field already to come is not asked twice."""
    again = [
        spec
        for spec in wrong
        if tries.get(spec.name, 0) < menu.verification_attempts
        and all(spec.name != later.name for later in to_ask)
    ]
    return [*again, *to_ask]
