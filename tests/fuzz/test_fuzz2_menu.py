"""Second-round property tests: menu YAML that is valid YAML but odd (duplicate digits,
pinned keys, values at and past the documented bounds, unicode labels, extreme ranking
policies). ``parse_menu`` gives a ``ConfigError`` whose lines each name the file and a key,
or a ``Menu`` that the personalisation core handles for any history: ``decide_menu``
never raises, its entries are a permutation of the options with distinct keys, each key
maps back to its option, and the menu and shortcut can be spoken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import CallerHistory, HistoryEvent
from ivr_engine.menu_config import parse_menu, referenced_prompts
from ivr_engine.personalize import decide_menu, interpret_menu_choice, menu_prompt_sequence
from ivr_engine.personalize.announce import shortcut_prompt_sequence

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PATH = Path("menus/odd.yaml")
INTENTS = ["billing", "support", "operator", "sales", "x" * 40]
DIGITS = ["1", "2", "3", "0", "*", "#", "9"]

_good_number = st.sampled_from([5e-324, 1e-300, 0.001, 0.5, 1, 30, 365, 3650, 36500, 12, 500])
_bad_number = st.sampled_from(
    [3650.0000001, 1e308, 0, -1, 501, "30", float("inf"), float("nan"), 2**64, True]
)  # fmt: skip
_good_label = st.sampled_from(["Billing", "Ünïcødé ☎", "a" * 80, "\u200b", "x\ny", " "])
_bad_label = st.sampled_from(["", "a" * 81, 5])


def _odd(draw: st.DrawFn, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """Mostly a good value, sometimes (1 in 60) a bad one: most menus parse."""
    return draw(bad) if draw(st.integers(0, 59)) == 0 else draw(good)


@st.composite
def _menu_doc(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 12))
    intents = [f"i{n}" if n else "operator" for n in range(count)]
    digits = draw(st.permutations(list("1234567890*#")))[:count]
    options = []
    for intent, digit in zip(intents, digits, strict=True):
        option: dict[str, Any] = {
            "intent": _odd(draw, st.just(intent), st.sampled_from(["i1", "operator", "Bad"])),
            "digit": _odd(draw, st.just(digit), st.sampled_from(["1", 1, "10", "A"])),
            "label": _odd(draw, _good_label, _bad_label),
            "prompt": _odd(draw, st.sampled_from(["ivr/a", "a/b/c"]), st.just("bad prompt")),
        }
        if draw(st.booleans()):
            option["pinned"] = _odd(draw, st.booleans(), st.sampled_from(["maybe", 2]))
        if draw(st.integers(0, 3)) == 0:
            option["required_fields"] = _odd(draw, st.just(["zip"]), st.just(["acct"]))
        if draw(st.integers(0, 3)) == 0:
            option["shortcut_prompt"] = "ivr/again"
        options.append(option)
    if draw(st.integers(0, 19)) == 0:
        options = draw(st.sampled_from([[], options * 2]))
    doc: dict[str, Any] = {"menu": _odd(draw, st.just("main"), st.just("Main")),
                           "options": options,
                           "fields": {"zip": {"prompt": "ivr/zip"}}}  # fmt: skip
    if draw(st.booleans()):
        doc["digit_policy"] = _odd(draw, st.sampled_from(["positional", "stable"]), st.just("x"))
    if draw(st.booleans()):
        doc["fallback_intent"] = _odd(draw, st.sampled_from(intents), st.just("nobody"))
    if draw(st.booleans()):
        keys = draw(st.sets(st.sampled_from(["half_life_days", "max_age_days"])))
        doc["ranking"] = {key: _odd(draw, _good_number, _bad_number) for key in keys}
        doc["ranking"]["max_events"] = _odd(draw, st.sampled_from([1, 50, 500]), st.just(501))
    if draw(st.booleans()):
        doc["shortcut"] = {
            "enabled": draw(st.booleans()),
            "min_share": _odd(draw, st.sampled_from([5e-324, 0.01, 0.6, 1]), st.just(1.01)),
            "min_contacts": _odd(draw, st.sampled_from([1, 3, 100]), st.just(0)),
            "yes_digit": draw(st.sampled_from(DIGITS)),
            "no_digit": draw(st.sampled_from(DIGITS)),
        }
    return doc


_event = st.builds(
    HistoryEvent,
    occurred_at=st.one_of(
        st.integers(-(10**6), 400 * 86400).map(lambda s: NOW - timedelta(seconds=s)),
        st.sampled_from([datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)]),
    ),
    channel=st.sampled_from(["voice", "sms"]),
    event_type=st.sampled_from(["call.ivr", "case.opened", "case.closed"]),
    intent=st.sampled_from(["i1", "i1", "i1", "i1", "i2", "operator", None, "unknown"]),
    case_id=st.sampled_from([None, "A", "B"]),
)


@given(_menu_doc(), st.lists(_event, max_size=25), st.booleans())
def test_odd_menus_are_config_errors_or_personalise_cleanly(
    doc: dict[str, Any], events: list[HistoryEvent], known: bool
) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    try:
        menu = parse_menu(PATH, text)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            assert line.startswith(f"{PATH}: "), str(exc)
            assert line[len(f"{PATH}: ") :].split(":", 1)[0].strip(), str(exc)  # a key
        return
    referenced_prompts(menu)
    history = CallerHistory("c1", None, tuple(sorted(events, key=lambda e: e.occurred_at,
                                                     reverse=True))) if known else None  # fmt: skip
    decision = decide_menu(menu, history, NOW)
    options = {o.intent: o for o in menu.options}
    assert sorted(e.option.intent for e in decision.entries) == sorted(options)
    digits = [e.digit for e in decision.entries]
    assert len(set(digits)) == len(digits)
    assert sorted(digits) == sorted(o.digit for o in menu.options)
    for entry in decision.entries:
        assert interpret_menu_choice(decision, entry.digit) == entry.option.intent
    menu_prompt_sequence(decision, menu.prompts, greeting=True)
    if decision.shortcut is not None:
        assert decision.shortcut.intent in options
        shortcut_prompt_sequence(decision.shortcut, menu.prompts, greeting=True)
