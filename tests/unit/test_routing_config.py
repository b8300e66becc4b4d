"""Routing configuration: the sample file, and errors that name the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr_engine.domain.errors import ConfigError
from ivr_engine.menu_config import load_menus
from ivr_engine.routing import (
    AffinityPolicy,
    OverflowStage,
    RelaxationStage,
    SkillRequirement,
    check_intents_routed,
    load_routing_config,
    parse_routing_config,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "routing.yaml"
WHERE = Path("config/x.yaml")

MINIMAL = """
skills: [billing, general]
intents:
  billing:
    skills: {billing: 4}
    overflow: queue:billing
"""


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_routing_config(WHERE, text)
    message = str(info.value)
    assert all(line.startswith(f"{WHERE}: ") for line in message.splitlines()), message
    return message


def test_sample_config_loads() -> None:
    config = load_routing_config(SAMPLE)
    billing = config.intents["billing"]
    assert billing.skills == (SkillRequirement("billing", 4),)
    assert billing.overflow == (
        OverflowStage(0.0, "queue:billing"),
        OverflowStage(240.0, "callback"),
    )
    assert billing.relaxation[0] == RelaxationStage(20.0, 2, False)
    assert billing.relaxation[-1].any_language
    assert config.intents["cancel"].relaxation == (RelaxationStage(45.0, 3, False),)
    assert config.affinity == AffinityPolicy(window_days=30.0, max_wait_s=60.0)
    assert config.fallback_target == "queue:general" and config.max_candidates == 5


def test_sample_config_routes_every_menu_intent() -> None:
    config = load_routing_config(SAMPLE)
    menu = load_menus(ROOT / "config" / "menus")["main"]
    intents = {option.intent for option in menu.options}
    check_intents_routed(config, intents, SAMPLE)
    assert intents == set(config.intents)


def test_sample_overflow_queues_match_the_menu_targets() -> None:
    config = load_routing_config(SAMPLE)
    menu = load_menus(ROOT / "config" / "menus")["main"]
    for option in menu.options:
        assert config.intents[option.intent].overflow[0].target == option.target


def test_minimal_config_gets_defaults() -> None:
    config = parse_routing_config(WHERE, MINIMAL)
    assert config.intents["billing"].relaxation == ()
    assert config.affinity == AffinityPolicy()
    assert config.fallback_target == "queue:general"


def test_default_stages_apply_unless_an_intent_overrides_them() -> None:
    text = """
skills: [billing, general]
relaxation:
  - {after_s: 30, min_proficiency: 2}
intents:
  billing: {skills: {billing: 4}, overflow: queue:billing}
  operator: {skills: {general: 1}, overflow: queue:general, relaxation: []}
"""
    config = parse_routing_config(WHERE, text)
    assert config.intents["billing"].relaxation == (RelaxationStage(30.0, 2),)
    assert config.intents["operator"].relaxation == ()


def test_missing_intent_is_reported() -> None:
    config = parse_routing_config(WHERE, MINIMAL)
    with pytest.raises(ConfigError) as info:
        check_intents_routed(config, ["billing", "moving", "cancel"], "menus/main.yaml")
    assert str(info.value) == (
        "menus/main.yaml: intents: no routing rule for cancel, moving "
        "(add them under intents: in the routing configuration)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL.replace("billing: 4", "billing: 6"),
            "intents.billing.skills.billing: Input should be less than or equal to 5",
        ),
        (
            MINIMAL.replace("billing: 4", "billing: 0"),
            "intents.billing.skills.billing: Input should be greater than or equal to 1",
        ),
        (
            MINIMAL.replace("billing: 4", "billing: high"),
            "intents.billing.skills.billing: Input should be a valid integer",
        ),
        (
            MINIMAL.replace("billing: 4", "billing: 4.5"),
            "intents.billing.skills.billing: Input should be a valid integer",
        ),
        (
            MINIMAL.replace("billing: 4", "biling: 4"),
            "intents.billing.skills.biling: unknown skill (add it under skills: 'biling')",
        ),
        (
            MINIMAL.replace("queue:billing", "Queue(billing)"),
            "intents.billing.overflow[0].target: String should match pattern",
        ),
        (
            MINIMAL.replace("{billing: 4}", "{}"),
            "intents.billing.skills: Dictionary should have at least 1 item",
        ),
        (
            MINIMAL.replace("    overflow: queue:billing\n", ""),
            "intents.billing.overflow: Field required",
        ),
        (
            MINIMAL + "    overfow: callback\n",
            "intents.billing.overfow: Extra inputs are not permitted",
        ),
        (
            MINIMAL + "affinity: {window_days: -1}\n",
            "affinity.window_days: Input should be greater than or equal to 0",
        ),
        (
            MINIMAL + "max_candidates: 0\n",
            "max_candidates: Input should be greater than or equal to 1",
        ),
        (
            MINIMAL.replace("skills: [billing, general]", "skills: [billing, Billing]"),
            "skills[1]: String should match pattern",
        ),
        (
            MINIMAL.replace("skills: [billing, general]", "skills: [billing, billing]"),
            "skills: 'billing' is listed twice",
        ),
        (
            MINIMAL.replace("skills: [billing, general]\n", ""),
            "skills: Field required",
        ),
        (
            MINIMAL + "fallback_target: agent:1001\n",
            "fallback_target: String should match pattern",
        ),
    ],
)
def test_errors_name_file_and_key(text: str, expected: str) -> None:
    assert f"{WHERE}: {expected}" in _error(text)


def test_bad_target_says_how_to_fix_it() -> None:
    message = _error(MINIMAL.replace("queue:billing", "queue billing"))
    assert "use 'queue:<name>' (an Asterisk queue) or 'callback'" in message


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        (
            "[{after_s: 20, min_proficiency: 2}, {after_s: 20, min_proficiency: 1}]",
            "relaxation[1].after_s: must be greater than 20",
        ),
        (
            "[{after_s: 20, min_proficiency: 2}, {after_s: 60, min_proficiency: 3}]",
            "relaxation[1].min_proficiency: must be at most 2 (stages only relax)",
        ),
        (
            "[{after_s: 20, min_proficiency: 2}, {after_s: 60, any_language: true}]",
            "relaxation[1].min_proficiency: must be at most 2 (stages only relax)",
        ),
        (
            "[{after_s: 20, any_language: true}, {after_s: 60, min_proficiency: 1}]",
            "relaxation[1].any_language: must stay true once relaxed",
        ),
        ("[{after_s: 0, min_proficiency: 2}]", "relaxation[0].after_s: Input should be greater"),
        ("[{after_s: 20, min_proficency: 2}]", "relaxation[0].min_proficency: Extra inputs"),
    ],
)
def test_stage_errors(stages: str, expected: str) -> None:
    assert f"{WHERE}: {expected}" in _error(MINIMAL + f"relaxation: {stages}\n")


def test_intent_stage_errors_name_the_intent() -> None:
    text = MINIMAL + "    relaxation: [{after_s: 30}, {after_s: 10}]\n"
    assert f"{WHERE}: intents.billing.relaxation[1].after_s: must be greater than 30" in _error(
        text
    )


@pytest.mark.parametrize(
    ("overflow", "expected"),
    [
        ("[{after_s: 5, target: callback}]", "[0].after_s: the first overflow target must start"),
        (
            "[{target: queue:billing}, {after_s: 0, target: callback}]",
            "[1].after_s: must be greater than 0",
        ),
        ("[]", ": Tuple should have at least 1 item"),
        ("[{after_s: 0}]", "[0].target: Field required"),
    ],
)
def test_overflow_errors(overflow: str, expected: str) -> None:
    text = MINIMAL.replace("overflow: queue:billing", f"overflow: {overflow}")
    assert f"{WHERE}: intents.billing.overflow{expected}" in _error(text)


def test_every_problem_is_reported_at_once() -> None:
    text = """
skills: [billing]
intents:
  billing: {skills: {billing: 4, retention: 3}, overflow: [{after_s: 9, target: callback}]}
"""
    assert _error(text).splitlines() == [
        f"{WHERE}: intents.billing.skills.retention: unknown skill "
        "(add it under skills: 'retention')",
        f"{WHERE}: intents.billing.overflow[0].after_s: the first overflow target must start at 0",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("skills: [a\n", "expected ',' or ']', but got '<stream end>' (line 2, column 1)"),
        ("a: b: c\n", "not valid YAML: mapping values are not allowed here (line 1, column 5)"),
        ("- billing\n", "<top>: expected a mapping with 'skills:' and 'intents:'"),
        ("", "<top>: expected a mapping"),
    ],
)
def test_document_shape_errors(text: str, expected: str) -> None:
    assert expected in _error(text)


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "routing.yaml"
    with pytest.raises(ConfigError, match=r"routing\.yaml: cannot read routing configuration"):
        load_routing_config(missing)
    missing.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read"):
        load_routing_config(missing)


def test_load_names_the_real_path(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(MINIMAL.replace("billing: 4", "billing: 9"), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}: intents\.billing\.skills\.billing: "):
        load_routing_config(path)
