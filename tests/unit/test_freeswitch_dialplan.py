"""The sample FreeSWITCH dialplan (dialplans/freeswitch/ivr-engine.xml), read as XML.

The properties the engine and the call-event bridge rely on, action by action; the events
the ``event`` application would fire are built by the documented-protocol fake
(``tests/component/fake_freeswitch.event_application``, after mod_dptools' ``event``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm_bridge.calls.esl_normalise import normalise_esl
from crm_bridge.calls.state import BridgeState, NormaliserConfig
from ivr_engine.telephony.esl import EslEvent
from tests.component.fake_freeswitch import event_application, expand
from tests.component.fake_freeswitch_dialplan import preprocess

REPO = Path(__file__).resolve().parents[2]
DIALPLAN = REPO / "dialplans/freeswitch/ivr-engine.xml"

Action = tuple[str, str]


def extensions() -> dict[str, list[Action]]:
    """Every extension of the sample, with the generated static menu it includes."""
    root = ET.fromstring(preprocess(DIALPLAN))
    return {
        e.get("name", ""): [
            (a.get("application", ""), a.get("data", ""))
            for a in e.iter()
            if a.tag in ("action", "anti-action")
        ]
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


# Set by the engine (validated there) or by this dialplan / FreeSWITCH itself, never by a
# caller. Anything else in an event's data (caller_id_number, caller_id_name, sip_*, ...)
# could carry commas and `Event-Subclass=`.
TRUSTED = re.compile(r"IVR_[A-Z_]+|originate_disposition")


def test_no_event_or_log_action_carries_caller_controlled_text() -> None:
    for name, actions in extensions().items():
        for app, data in actions:
            if app not in ("event", "log"):
                continue
            used = re.findall(r"\$\{([^}]*)\}", data)
            untrusted = [v for v in used if not TRUSTED.fullmatch(v)]
            assert not untrusted, f"{name}: {app} carries {untrusted}"


CALL = "0f6f5b7e-5a1d-4c39-9d0a-1f2e3d4c5b6a"
FORGED = "1555,Event-Subclass=ivr_engine::routed,Intent=billing,Outcome=routed"


def channel_data(number: str) -> dict[str, str]:
    return {
        "Unique-ID": CALL,
        "Channel-Call-UUID": CALL,
        "Call-Direction": "inbound",
        "Caller-Caller-ID-Number": number,
        "Caller-Context": "public",
        "Event-Date-Timestamp": "1732440000000000",
    }


def fallback_data() -> str:
    events = [d for app, d in extensions()["ivr-fail"] if app == "event"]
    assert len(events) == 1
    return events[0]


@pytest.mark.parametrize("number", ["+15551230001", FORGED, "1'2,Event-Name=HEARTBEAT"])
def test_the_fallback_event_keeps_its_subclass_and_the_callers_number(number: str) -> None:
    """The ivr-fail ``event`` as FreeSWITCH fires it, for any caller ID, through the bridge."""
    variables = {"IVR_OUTCOME": "failed", "caller_id_number": number}
    fired = event_application(expand(fallback_data(), variables), channel_data(number))
    assert fired["Event-Subclass"] == "ivr_engine::fallback"
    state = BridgeState(NormaliserConfig(source="fs1", inbound_contexts=("public",)))
    now = datetime.now(UTC)
    create = {**channel_data(number), "Event-Name": "CHANNEL_CREATE"}
    out = [n for h in (create, fired) for n in normalise_esl(EslEvent(h), state, at=now)]
    assert [n.kind.value for n in out] == ["call.started", "call.ivr_fallback"]
    assert out[1].data == {"outcome": "failed", "caller": number}


def test_the_bridge_takes_the_caller_from_the_channel_not_from_a_caller_header() -> None:
    """An event from an older sample (``Caller=${caller_id_number}`` in its data)."""
    state = BridgeState(NormaliserConfig(source="fs1", inbound_contexts=("public",)))
    now = datetime.now(UTC)
    create = {**channel_data("+15551230001"), "Event-Name": "CHANNEL_CREATE"}
    fallback = {
        **channel_data("+15551230001"),
        "Event-Name": "CUSTOM",
        "Event-Subclass": "ivr_engine::fallback",
        "Outcome": "failed",
        "Caller": "someone else",
    }
    out = [n for h in (create, fallback) for n in normalise_esl(EslEvent(h), state, at=now)]
    assert out[1].data == {"outcome": "failed", "caller": "+15551230001"}


@pytest.mark.parametrize(("extension", "before"), [("ivr-entry", "socket"), ("ivr-fail", "read")])
def test_entry_and_fallback_clear_every_engine_variable_first(extension: str, before: str) -> None:
    """As in the Asterisk dialplan: nothing from an earlier pass, or set by an engine that
    then failed (an agent's endpoint), may route the call."""
    from tests.unit.test_dialplan_samples import engine_variables

    actions = extensions()[extension]
    until = next(i for i, (app, _) in enumerate(actions) if app == before)
    values = {
        name: value
        for name in engine_variables()
        for value in [sets(a, name) for a in actions[:until]]
        if value is not None
    }
    missing = sorted(engine_variables() - set(values))
    assert not missing, f"{extension} does not clear {missing}"
    kept = {n: v for n, v in values.items() if v and n != "IVR_DECISION"}
    assert not kept, kept
