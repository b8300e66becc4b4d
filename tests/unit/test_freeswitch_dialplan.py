"""The sample FreeSWITCH dialplan (dialplans/freeswitch/ivr-engine.xml), read as XML.

What mod_event_socket and mod_dptools make of it is checked against their source (see
/tmp/notes in the review); here: the properties the engine relies on, action by action.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIALPLAN = REPO / "dialplans/freeswitch/ivr-engine.xml"

Action = tuple[str, str]


def extensions() -> dict[str, list[Action]]:
    root = ET.parse(DIALPLAN).getroot()
    return {
        e.get("name", ""): [(a.get("application", ""), a.get("data", "")) for a in e.iter("action")]
        for e in root.iter("extension")
    }


def sets(action: Action, name: str) -> str | None:
    """The value ``action`` gives the channel variable ``name`` (None: it does not touch it)."""
    app, data = action
    if app == "set" and data.partition("=")[0] == name:
        return data.partition("=")[2]
    if app == "unset" and data == name:
        return ""
    return None


def test_every_socket_action_is_preceded_by_socket_resume_true() -> None:
    """Without socket_resume (or the engine's resume) FreeSWITCH does not go on with the
    dialplan after an outbound socket closes: the routing after ``socket`` never runs."""
    sockets = 0
    for name, actions in extensions().items():
        for i, (app, _) in enumerate(actions):
            if app != "socket":
                continue
            sockets += 1
            values = [v for v in (sets(a, "socket_resume") for a in actions[:i]) if v is not None]
            assert values and values[-1] == "true", f"{name}: socket without socket_resume=true"
    assert sockets == 2  # ivr-entry and the reroute in ivr-agent


def test_every_socket_is_async_without_full() -> None:
    """``full`` gives the per-call socket every ``api``/``bgapi`` command of the switch; the
    engine sends only what mod_event_socket serves before its outbound gate (connect,
    myevents, resume, sendmsg). ``async``: events (DTMF, completions) while an app runs."""
    data = [d for actions in extensions().values() for app, d in actions if app == "socket"]
    assert data == ["$${ivr_engine_esl} async"] * 2
