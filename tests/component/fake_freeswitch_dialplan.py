"""A fake FreeSWITCH XML dialplan: the pre-processor's include, mod_dialplan_xml's hunt, and
the few applications the sample dialplan (dialplans/freeswitch/ivr-engine.xml) runs.

Written from FreeSWITCH's sources, not from the engine's code:

* ``preprocess(path)``: ``switch_xml.c``'s ``preprocess``, line by line: a line with an
  include pre-process directive is replaced by the files its pattern (a glob, relative to the
  including file's directory) names, recursively; any other line naming the directive is
  dropped, as FreeSWITCH drops it (even inside a comment).
* ``hunt(context, destination, call)``: ``mod_dialplan_xml``'s ``dialplan_hunt`` /
  ``parse_exten``. Extensions in document order; in each, conditions in order: ``field`` is
  ``destination_number``, another caller-profile field (``caller_id_number``,
  ``privacy_hide_number``) or ``${var}`` expanded; ``expression`` a regex searched in it. A
  true condition adds its ``action``s, a false one its ``anti-action``s (the extension then
  counts as matched when it has any) and, with the default ``break="on-false"``, ends the
  extension. The first matched extension ends the hunt. Actions are collected when the
  hunt runs (so a condition sees the variables as they were at the ``transfer``); their
  data is expanded when they run.
* ``run(context, destination, call)``: runs what the hunt found, hunting again at each
  ``transfer``, until a ``hangup``, the end of the actions or no extension matches
  (``call.no_route``: FreeSWITCH hangs up with NO_ROUTE_DESTINATION). Applications:
  ``answer``, ``set`` (an empty value unsets), ``unset``, ``multiset`` (space-separated),
  ``event`` (``fake_freeswitch.event_application``), ``log``, ``playback``, ``read``
  (``min max file var timeout terminators``: takes the caller's next key, "" for none, and
  sets var to it, or unsets it), ``socket`` (the engine unreachable: nothing happens),
  ``bridge`` (nobody answers), ``transfer`` (``dest XML context``), ``hangup``. Any other
  application fails the test, as does a ``${...}`` the fake cannot expand.
"""

from __future__ import annotations

import glob
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tests.component.fake_freeswitch import event_application

_INCLUDE = re.compile(r'<X-PRE-PROCESS\s+cmd="include"\s+data="([^"]+)"\s*/>', re.IGNORECASE)
_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
MAX_TRANSFERS = 40

Action = tuple[str, str]  # (application, data)


def preprocess(path: Path) -> str:
    out: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        match = _INCLUDE.search(line)
        if match:
            for name in sorted(glob.glob(str(path.parent / match[1]))):
                out.append(preprocess(Path(name)))
        elif "x-pre-process" not in line.lower():
            out.append(line)
    return "".join(out)


def load_context(path: Path, name: str = "ivr-engine") -> ET.Element:
    root = ET.fromstring(preprocess(path))
    contexts = [c for c in root.iter("context") if c.get("name") == name]
    assert len(contexts) == 1, f"{path}: context {name}: {len(contexts)} found"
    return contexts[0]


@dataclass
class DialplanCall:
    """One caller: keys pressed per ``read`` ("" stays silent), what the dialplan did."""

    keys: list[str] = field(default_factory=list)
    caller_id_number: str = "+15551230001"
    privacy_hide_number: bool = False
    variables: dict[str, str] = field(default_factory=dict)
    heard: list[list[str]] = field(default_factory=list)  # files per read or playback
    events: list[dict[str, str]] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)  # every hunt, in order
    matched: list[str] = field(default_factory=list)  # the extension each hunt matched
    bridged: list[str] = field(default_factory=list)
    no_route: str | None = None
    hung_up: bool = False

    def field_value(self, name: str, destination: str) -> str:
        if "$" in name:
            return expand(name, self.variables)
        profile = {
            "destination_number": destination,
            "caller_id_number": self.caller_id_number,
            "privacy_hide_number": "true" if self.privacy_hide_number else "false",
        }
        assert name in profile, f"the fake has no caller-profile field {name!r}"
        return profile[name]


def expand(data: str, variables: dict[str, str]) -> str:
    expanded = _VARIABLE.sub(lambda m: variables.get(m[1], ""), data)
    assert "${" not in expanded, f"the fake cannot expand {data!r}"
    return expanded


def hunt(context: ET.Element, destination: str, call: DialplanCall) -> list[Action]:
    actions: list[Action] = []
    for extension in context.iter("extension"):
        proceed = False
        for condition in extension.findall("condition"):
            assert condition.get("break") is None, "the fake knows only break=on-false"
            value = call.field_value(condition.get("field", ""), destination)
            true = re.search(condition.get("expression", ""), value) is not None
            proceed = true
            tag = "action" if true else "anti-action"
            for item in condition.findall(tag):
                actions.append((item.get("application", ""), item.get("data", "")))
                proceed = True
            if not true:
                break
        if proceed:
            call.matched.append(extension.get("name", ""))
            return actions
    return actions


def run(context: ET.Element, destination: str, call: DialplanCall) -> DialplanCall:
    for _ in range(MAX_TRANSFERS):
        call.destinations.append(destination)
        actions = hunt(context, destination, call)
        if not actions:
            call.no_route = destination
            return call
        next_destination = _execute(actions, call)
        if next_destination is None:
            return call
        destination = next_destination
    raise AssertionError(f"more than {MAX_TRANSFERS} transfers: {call.destinations}")


def _execute(actions: list[Action], call: DialplanCall) -> str | None:
    """Run ``actions``; the destination of a ``transfer``, None when the call ended."""
    for application, raw in actions:
        data = expand(raw, call.variables)
        if application == "transfer":
            destination, dialplan, context = data.split(" ")
            assert (dialplan, context) == ("XML", "ivr-engine"), data
            return destination
        if application == "hangup":
            call.hung_up = True
            return None
        _run_application(application, data, call)
    return None


def _run_application(application: str, data: str, call: DialplanCall) -> None:
    if application in ("set", "unset", "multiset"):
        pairs = data.split(" ") if application == "multiset" else [data]
        for pair in pairs:
            name, _, value = pair.partition("=")
            _set(call, name, value)
    elif application == "event":
        call.events.append(event_application(data, {"Unique-ID": "fake-call"}))
    elif application == "read":
        minimum, maximum, files, variable, _timeout, _terminators = data.split(" ")
        assert (minimum, maximum) == ("1", "1") and files.startswith("file_string://"), data
        call.heard.append(files.removeprefix("file_string://").split("!"))
        assert call.keys, f"read with no key left to press (heard {call.heard[-1][:2]}...)"
        _set(call, variable, call.keys.pop(0))
    elif application == "playback":
        call.heard.append([data])
    elif application == "bridge":
        call.bridged.append(data)
    else:
        assert application in ("answer", "log", "socket"), f"unknown application {application}"


def _set(call: DialplanCall, name: str, value: str) -> None:
    if value:
        call.variables[name] = value
    else:
        call.variables.pop(name, None)
