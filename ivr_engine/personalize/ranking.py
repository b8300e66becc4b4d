"""Rank a caller's intents from their cross-channel history. Pure: ``now`` is a parameter.

Window: events at most ``FUTURE_SKEW`` ahead of ``now`` (clock skew between channels; later
ones are ignored) and at most ``max_age_days`` old, newest first, cut to the newest
``max_events`` (the same cut the hot-path lookup makes, so pre-cut input ranks the same).

Contacts (``contacts.py``): one per call, conversation or message outside one, with a menu
intent, not one per event (follow-up events of a call or case are not contacts), weighted
``0.5 ** (age_days / half_life_days)``. Cases: windowed events grouped by ``case_id``; a case
is open unless its newest event is ``case.closed`` or older than ``open_case_max_age_days``
(``cases.case_state``, the conversation API's rule too); its intent is that of its newest
event carrying one. Order: open-case intents first (if boosted; newest case activity first),
then score, latest contact, intent name. Ties never depend on the input order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ivr_engine.domain.models import HistoryEvent, IntentScore, RankingPolicy
from ivr_engine.personalize._time import age_days, ago, as_utc, window_start
from ivr_engine.personalize.cases import case_state, recency
from ivr_engine.personalize.contacts import contacts

FUTURE_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class _OpenCase:
    case_id: str
    intent: str
    last_at: datetime
    last_channel: str


@dataclass(slots=True)
class _Tally:
    score: float = 0.0
    contacts: int = 0
    latest_at: datetime | None = None


def rank_intents(
    events: Sequence[HistoryEvent],
    now: datetime,
    policy: RankingPolicy,
    known_intents: Collection[str],
) -> tuple[IntentScore, ...]:
    """Menu intents of this caller, most likely first, each with a human-readable reason."""
    window = windowed_events(events, now, policy)
    tallies = _tally(window, now, policy.half_life_days, known_intents)
    cases = _open_cases(window, known_intents, now, policy.open_case_max_age_days)
    total = sum(t.contacts for t in tallies.values())
    scores = [
        _score(intent, tallies.get(intent, _Tally()), total, cases.get(intent), now)
        for intent in set(tallies) | set(cases)
    ]
    return tuple(sorted(scores, key=lambda s: _order_key(s, cases, policy.open_case_boost)))


def windowed_events(
    events: Iterable[HistoryEvent], now: datetime, policy: RankingPolicy
) -> list[HistoryEvent]:
    """The events the ranking looks at, newest first, in an order independent of the input."""
    latest, oldest = as_utc(now) + FUTURE_SKEW, window_start(now, policy.max_age_days)
    kept = [e for e in events if oldest <= as_utc(e.occurred_at) <= latest]
    kept.sort(key=_newest_first, reverse=True)
    return kept[: max(policy.max_events, 0)]


def _newest_first(event: HistoryEvent) -> tuple[datetime, bool, str, str, str, str]:
    # at the same instant a case.closed counts as the newer event: the case is closed
    return (
        *recency(event.occurred_at, event.event_type),
        event.channel,
        event.event_type,
        event.intent or "",
        event.case_id or "",
    )


def _tally(
    window: Sequence[HistoryEvent], now: datetime, half_life: float, known: Collection[str]
) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {}
    for contact in contacts(window, known):  # newest first: the first one per intent is the latest
        tally = tallies.get(contact.intent)
        if tally is None:  # not setdefault: that would build a _Tally for every contact
            tally = tallies[contact.intent] = _Tally(latest_at=contact.at)
        tally.contacts += 1
        tally.score += 0.5 ** (age_days(contact.at, now) / half_life)
    return tallies


def _open_cases(
    window: Sequence[HistoryEvent], known: Collection[str], now: datetime, max_age_days: float
) -> dict[str, _OpenCase]:
    """Open cases by intent (``cases.case_state``: neither closed nor quiet for more than
    ``max_age_days``); an intent with several open cases keeps the most active one."""
    by_case: dict[str, list[HistoryEvent]] = {}
    for event in window:
        if event.case_id is not None:
            by_case.setdefault(event.case_id, []).append(event)
    found: dict[str, _OpenCase] = {}
    for case_id in sorted(by_case):
        newest = by_case[case_id][0]
        if case_state(newest.event_type, newest.occurred_at, now, max_age_days) != "open":
            continue
        case = _open_case(case_id, by_case[case_id], known)
        if case is None:
            continue
        best = found.get(case.intent)
        if best is None or case.last_at > best.last_at:
            found[case.intent] = case
    return found


def _open_case(
    case_id: str, newest_first: Sequence[HistoryEvent], known: Collection[str]
) -> _OpenCase | None:
    """The case as the menu shows it (it is open), or None when it has no menu intent."""
    newest = newest_first[0]
    intent = next((e.intent for e in newest_first if e.intent is not None), None)
    if intent is None or intent not in known:
        return None
    return _OpenCase(case_id, intent, as_utc(newest.occurred_at), newest.channel)


def _score(
    intent: str, tally: _Tally, total: int, case: _OpenCase | None, now: datetime
) -> IntentScore:
    return IntentScore(
        intent=intent,
        score=tally.score,
        contacts=tally.contacts,
        total_contacts=total,
        latest_at=tally.latest_at,
        open_case=case is not None,
        reason=_reason(intent, tally, total, case, now),
        case_id=case.case_id if case is not None else None,
        case_channel=case.last_channel if case is not None else None,
    )


def _reason(intent: str, tally: _Tally, total: int, case: _OpenCase | None, now: datetime) -> str:
    if case is not None:
        activity = f"last activity by {case.last_channel} {ago(case.last_at, now)}"
        return f"{intent}: open case {case.case_id}, {activity}"
    noun = "contact" if total == 1 else "contacts"
    latest = ago(tally.latest_at, now) if tally.latest_at is not None else "never"
    return f"{intent}: {tally.contacts} of last {total} {noun}, latest {latest}"


def _order_key(
    score: IntentScore, cases: dict[str, _OpenCase], boost: bool
) -> tuple[int, float, float, float, str]:
    case = cases.get(score.intent) if boost else None
    case_rank = (0, -case.last_at.timestamp()) if case is not None else (1, 0.0)
    latest = score.latest_at.timestamp() if score.latest_at is not None else float("-inf")
    return (*case_rank, -score.score, -latest, score.intent)
