"""The shipped dialplan samples agree with the shipped menus (a new intent needs a target)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ivr_engine.menu_config import load_menus

ROOT = Path(__file__).resolve().parents[2]


def _contexts(path: Path) -> dict[str, list[str]]:
    """Context name -> its lines (comments and blank lines left out)."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if match := re.fullmatch(r"\[([^\]]+)\]", line):
            current = found.setdefault(match[1], [])
        elif line:
            current.append(line)
    return found


def test_every_sample_intent_has_a_target_context_to_its_queue() -> None:
    contexts = _contexts(ROOT / "dialplans" / "ivr-targets.sample.conf")
    for menu in load_menus(ROOT / "config" / "menus").values():
        for option in menu.options:
            lines = contexts.get(f"ivr-target-{option.intent}")
            assert lines is not None, f"no [ivr-target-{option.intent}] in the sample"
            kind, _, queue = option.target.partition(":")
            assert kind == "queue", option.target
            assert lines[0].startswith(f"exten => s,1,Queue({queue},"), (option.intent, lines)


def test_the_entry_dialplan_names_every_outcome_it_branches_on() -> None:
    text = (ROOT / "dialplans" / "ivr-engine.conf").read_text()
    header = text.split("[ivr-entry]", 1)[0]
    branches = set(re.findall(r'"\$\{IVR_OUTCOME\}" = "(\w+)"', text))
    listed = re.search(r"IVR_OUTCOME\s+([a-z |]+)", header)
    assert listed is not None
    assert branches <= {word.strip() for word in listed[1].split("|")}, branches


def test_every_prompt_the_dialplans_play_is_built() -> None:
    played: set[str] = set()
    for conf in (ROOT / "dialplans").glob("*.conf"):
        for args in re.findall(r"(?:Playback|Background)\(([^)]*)\)", conf.read_text()):
            played |= {name for name in args.split(",")[0].split("&") if name.startswith("ivr-")}
    missing = [n for n in sorted(played) if not (ROOT / "prompts" / "en" / f"{n}.wav").is_file()]
    assert played and not missing, missing


def _dialplan_contexts() -> dict[str, list[str]]:
    """The contexts of ivr-engine.conf and of the generated fallback it includes."""
    return {
        **_contexts(ROOT / "dialplans" / "ivr-engine.conf"),
        **_contexts(ROOT / "dialplans" / "ivr-fail-main.conf"),
    }


@pytest.mark.parametrize("name", ["ivr-engine.conf", "ivr-fail-main.conf"])
def test_no_event_carries_the_callers_raw_caller_id(name: str) -> None:
    """A "," in a caller ID would add or override UserEvent keys (it splits on commas)."""
    text = (ROOT / "dialplans" / name).read_text()
    assert "UserEvent(" in text
    for line in text.splitlines():
        if "UserEvent(" in line.split(";", 1)[0]:
            assert re.search(r"(?<!,)\$\{CALLERID\(", line) is None, line


def test_a_comma_list_in_an_event_is_quoted() -> None:
    line = next(
        x
        for x in (ROOT / "dialplans" / "ivr-engine.conf").read_text().splitlines()
        if "UserEvent(IvrOverflow" in x
    )
    assert 'Tried: "${IVR_TRIED_AGENTS}"' in line


def engine_variables() -> set[str]:
    """Every channel variable the engine sets: the names of ivr_engine/flows/variables.py,
    the engine's one module of them. (Not ``IVR_READ``: every ``Read`` sets it before the
    engine reads it, and a sensitive read must leave it unset, not even empty.)"""
    from ivr_engine.flows import variables

    names = {
        value
        for name, value in vars(variables).items()
        if name.isupper() and isinstance(value, str) and value.startswith("IVR_")
    }
    assert {"IVR_OUTCOME", "IVR_AGENT_ENDPOINT", "IVR_CASE_ID", "IVR_WAIT_START"} <= names
    return names


def assigned_before(lines: list[str], marker: str) -> dict[str, str]:
    """What the ``Set``/``MSet`` steps of a context give each variable before the first line
    holding ``marker``."""
    values: dict[str, str] = {}
    for line in lines:
        if marker in line:
            return values
        for args in re.findall(r"\bMSet\(([^)]*)\)", line):
            values.update(pair.split("=", 1) for pair in args.split(","))  # type: ignore[misc]
        for name, value in re.findall(r"\bSet\((\w+)=([^)]*)\)", line):
            values[name] = value
    raise AssertionError(f"no {marker!r} in the context")


@pytest.mark.parametrize(
    ("context", "marker"), [("ivr-entry", "AGI("), ("ivr-fail", "Background(")]
)
def test_entry_and_fallback_clear_every_engine_variable_first(context: str, marker: str) -> None:
    """A value from a transfer back into the IVR, or set by an engine that then failed (an
    agent's endpoint set before the outcome), must never route the call."""
    lines = _dialplan_contexts()[context]
    values = assigned_before(lines, marker)
    missing = sorted(engine_variables() - set(values))
    assert not missing, f"[{context}] does not clear {missing}"
    kept = {n: values[n] for n in engine_variables() if values[n] and n != "IVR_DECISION"}
    assert not kept, kept
    assert values["IVR_DECISION"] == ("" if context == "ivr-entry" else "dialplan-fallback")


def test_ids_in_the_continued_event_are_filtered() -> None:
    """A case id may come from another channel: a "," in it would add UserEvent keys."""
    text = (ROOT / "dialplans" / "ivr-engine.conf").read_text()
    (line,) = [x for x in text.splitlines() if "UserEvent(IvrContinued" in x.split(";", 1)[0]]
    assert "${FILTER(" in line
    assert re.search(r"(?<!,)\$\{IVR_\w+\}", line) is None, line


def test_a_callback_overflow_is_told_so_before_any_queue() -> None:
    """IVR_TARGET=callback (a routing.yaml overflow) goes to ivr-callback, which plays the
    callback prompt and hangs up; the branch comes before the [ivr-target-<intent>] jumps, and
    the caller's own ID enters the expression only through FILTER and LEN."""
    route = _contexts(ROOT / "dialplans" / "ivr-engine.conf")["ivr-route"]
    branch = next(i for i, line in enumerate(route) if "?ivr-callback,s,1" in line)
    first_target = next(i for i, line in enumerate(route) if "ivr-target-${IVR_INTENT}" in line)
    assert branch < first_target
    assert '"${IVR_TARGET}" = "callback"' in route[branch]
    assert "${LEN(${FILTER(0-9,${CALLERID(num)})})} > 0" in route[branch]
    callback = _contexts(ROOT / "dialplans" / "ivr-engine.conf")["ivr-callback"]
    assert callback[1:3] == ["same => n,Playback(ivr-engine/callback-later)", "same => n,Hangup()"]
