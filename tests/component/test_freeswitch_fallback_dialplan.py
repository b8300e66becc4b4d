"""Calls through the sample FreeSWITCH dialplan with the engine down, run by the fake
mod_dialplan_xml (``fake_freeswitch_dialplan``): ivr-entry's socket fails, the generated
static menu takes the caller's keys, and the routing after it (ivr-outcome-routed,
ivr-agent, ivr-overflow with its callback branch) runs on what the menu set."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr_engine.domain.models import Menu, MenuOption
from ivr_engine.fallback_freeswitch import render_fallback_xml
from ivr_engine.menu_config import load_menu_files
from ivr_engine.personalize import menu_prompt_sequence, static_menu
from tests.component.fake_freeswitch_dialplan import DialplanCall, load_context, run
from tests.unit.test_fallback_dialplan import _main_text, _menus_dir, _moved

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "dialplans" / "freeswitch" / "ivr-engine.xml"
MAIN = load_menu_files(ROOT / "config" / "menus")["main"][1]


def _engine_down(keys: list[str], dialplan: Path = SAMPLE) -> DialplanCall:
    """A call into ivr-entry whose socket cannot reach the engine (IVR_OUTCOME stays empty)."""
    return run(load_context(dialplan), "ivr-entry", DialplanCall(keys=list(keys)))


def _menu_files(menu: Menu, lead: str) -> list[str]:
    pieces = menu_prompt_sequence(static_menu(menu, "x"), menu.prompts, greeting=False)
    return [f"{lead}.wav", *(f"{p}.wav" for p in pieces)]


def _subclasses(call: DialplanCall) -> list[str]:
    return [e["Event-Subclass"] for e in call.events]


@pytest.mark.parametrize("option", MAIN.options, ids=lambda o: f"{o.digit}-{o.intent}")
def test_each_key_routes_as_the_menu_says(option: MenuOption) -> None:
    intent, target = option.intent, option.target
    call = _engine_down([option.digit])
    assert call.destinations[:3] == ["ivr-entry", "ivr-outcome-", "ivr-fail"]
    assert call.heard[0] == _menu_files(MAIN, MAIN.prompts.welcome)
    assert {k: call.variables.get(k) for k in ("IVR_INTENT", "IVR_TARGET", "IVR_OUTCOME")} == {
        "IVR_INTENT": intent,
        "IVR_TARGET": target,
        "IVR_OUTCOME": "routed",
    }
    assert call.variables["IVR_DECISION"] == "dialplan-fallback"
    assert _subclasses(call) == [
        "ivr_engine::fallback",
        "ivr_engine::routed",
        "ivr_engine::overflow",
    ]
    # the deployer's ivr-target-<intent> (none in the sample): the end of the route
    assert call.no_route == f"ivr-target-{intent}" and call.bridged == []


def test_key_6_is_billing_in_the_sample() -> None:
    call = _engine_down(["6"])
    assert (call.variables["IVR_INTENT"], call.variables["IVR_TARGET"]) == (
        "billing",
        "queue:billing",
    )
    routed = call.events[1]
    assert (routed["Intent"], routed["Target"], routed["Decision"]) == (
        "billing",
        "queue:billing",
        "dialplan-fallback",
    )


def test_an_agent_left_by_a_failed_engine_is_not_rung() -> None:
    call = DialplanCall(keys=["2"])
    call.variables.update(IVR_OUTCOME="failed", IVR_AGENT_ENDPOINT="user/agent-7")
    run(load_context(SAMPLE), "ivr-outcome-failed", call)
    assert call.bridged == [] and "IVR_AGENT_ENDPOINT" not in call.variables
    assert call.events[0]["Outcome"] == "failed"
    assert call.no_route == "ivr-target-tech_support"


def test_a_wrong_key_then_a_right_one() -> None:
    call = _engine_down(["8", "5"])
    assert call.heard[:2] == [
        _menu_files(MAIN, MAIN.prompts.welcome),
        _menu_files(MAIN, MAIN.prompts.invalid),  # lead-in, the menu again, no welcome
    ]
    assert call.variables["IVR_INTENT"] == "cancel"
    assert "ivr-fail-invalid" in call.matched


def test_no_key_at_all_goes_to_the_fallback_intent_after_the_last_try() -> None:
    call = _engine_down([""] * MAIN.attempts)
    assert call.heard == [
        _menu_files(MAIN, MAIN.prompts.welcome),
        *[_menu_files(MAIN, MAIN.prompts.no_input)] * (MAIN.attempts - 1),
        ["ivr-engine/transfer.wav"],  # no lead-in after the last try: routed at once
    ]
    assert call.variables["IVR_INTENT"] == MAIN.fallback_intent == "operator"
    assert call.no_route == "ivr-target-operator"


def test_wrong_keys_and_silence_count_as_tries_together() -> None:
    call = _engine_down(["9", "", "*"])
    assert [files[0] for files in call.heard[:3]] == [
        "ivr-engine/welcome.wav",
        "ivr-engine/invalid-option.wav",
        "ivr-engine/no-input.wav",
    ]
    assert call.variables["IVR_INTENT"] == "operator" and call.keys == []


def _installed(tmp_path: Path, menu: Menu, source: str) -> Path:
    etc = tmp_path / "dialplan"
    shutil.copytree(SAMPLE.parent, etc)
    (etc / "ivr-engine" / "ivr-fail-main.xml").write_text(render_fallback_xml(menu, source))
    return etc / "ivr-engine.xml"


def test_a_regenerated_menu_with_moved_keys_routes_by_its_new_keys(tmp_path: Path) -> None:
    path, menu = load_menu_files(_menus_dir(tmp_path, _moved(_main_text())))["main"]
    dialplan = _installed(tmp_path, menu, path.as_posix())
    assert _engine_down(["3"], dialplan).variables["IVR_INTENT"] == "billing"
    assert _engine_down(["7"], dialplan).variables["IVR_TARGET"] == "queue:roaming"


def test_attempts_from_the_menu(tmp_path: Path) -> None:
    text = _main_text().replace("attempts: 3 ", "attempts: 1 ")
    text = text.replace("fallback_intent: operator", "fallback_intent: billing")
    path, menu = load_menu_files(_menus_dir(tmp_path, text))["main"]
    call = _engine_down(["8"], _installed(tmp_path, menu, path.as_posix()))
    assert len(call.heard) == 2 and call.variables["IVR_INTENT"] == "billing"


# --------------------------------------------------------------------------- callback


def _callback_menu(tmp_path: Path) -> Path:
    """The sample menu with the operator's target a callback."""
    text = _main_text().replace("target: queue:general", "target: callback")
    path, menu = load_menu_files(_menus_dir(tmp_path, text))["main"]
    operator = menu.option("operator")
    assert operator is not None and operator.target == "callback"
    return _installed(tmp_path, menu, path.as_posix())


def test_an_overflow_to_callback_tells_the_caller_and_ends_the_call() -> None:
    """The engine's own routing (normal path): no agent, IVR_TARGET=callback."""
    call = DialplanCall()
    call.variables.update(IVR_INTENT="billing", IVR_TARGET="callback", IVR_TRIED_AGENTS="a,b")
    run(load_context(SAMPLE), "ivr-overflow", call)
    assert call.matched == ["ivr-overflow-callback"]
    assert call.heard == [["ivr-engine/callback-later.wav"]] and call.hung_up
    overflow = call.events[0]
    assert (overflow["Event-Subclass"], overflow["Target"], overflow["Tried"]) == (
        "ivr_engine::overflow",
        "callback",
        "a,b",
    )
    assert call.no_route is None


def test_the_static_menu_reaches_the_callback_branch_too(tmp_path: Path) -> None:
    call = _engine_down(["0"], _callback_menu(tmp_path))
    assert call.variables["IVR_TARGET"] == "callback"
    assert call.heard[-1] == ["ivr-engine/callback-later.wav"] and call.hung_up


@pytest.mark.parametrize(
    ("number", "hidden"), [("+15551230001", True), ("anonymous", False), ("", False)]
)
def test_a_caller_without_a_number_to_call_back_overflows_as_any_other(
    number: str, hidden: bool
) -> None:
    call = DialplanCall(caller_id_number=number, privacy_hide_number=hidden)
    call.variables.update(IVR_INTENT="billing", IVR_TARGET="callback")
    run(load_context(SAMPLE), "ivr-overflow", call)
    assert call.matched == ["ivr-overflow"] and not call.hung_up
    assert call.no_route == "ivr-target-billing"
    assert _subclasses(call) == ["ivr_engine::overflow"]


def test_another_target_is_not_a_callback() -> None:
    call = DialplanCall()
    call.variables.update(IVR_INTENT="billing", IVR_TARGET="queue:billing")
    run(load_context(SAMPLE), "ivr-overflow", call)
    assert call.matched == ["ivr-overflow"] and call.no_route == "ivr-target-billing"
