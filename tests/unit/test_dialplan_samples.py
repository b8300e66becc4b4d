"""The shipped dialplan samples agree with the shipped menus (a new intent needs a target)."""

from __future__ import annotations

import re
from pathlib import Path

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
