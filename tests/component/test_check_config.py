"""``ivr-engine check-config`` refuses what ``run`` would refuse, without connecting."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr_engine.config_check import check_offline
from ivr_engine.domain.errors import ConfigError
from tests.component.test_ivr_flow import REPO, settings_for

AGENTS = {"agents_file": REPO / "config/agents.yaml", "routing_file": REPO / "config/routing.yaml"}


def test_a_complete_configuration_is_ok_part_by_part(tmp_path: Path) -> None:
    hooks = tmp_path / "webhooks.yaml"
    hooks.write_text(
        "subscriptions:\n  - id: crm\n    url: https://crm.example.com/hook\n"
        "    secret: " + "s" * 40 + "\n    events: ['call.*']\n"
    )
    settings = settings_for(
        "sqlite:///unused.db",
        tmp_path,
        **AGENTS,
        webhooks_file=hooks,
        continuation_secret="ab" * 32,
        ami_url="ami://engine:secret@127.0.0.1:5038",
        esl_url="esl://:ClueCon@127.0.0.1:8021",
    )
    lines = check_offline(settings)
    assert lines[0] == "ok: 1 menu(s): main"
    assert any(line.startswith("ok: ") and "agent(s)" in line for line in lines)
    assert f"ok: webhook subscriptions {hooks}" in lines and "ok: continuation_secret" in lines


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"agents_file": Path("/nonexistent/agents.yaml")}, "agents.yaml"),
        ({"continuation_secret": "abc"}, "continuation_secret: use hex"),
        ({"continuation_secret": "ab" * 8}, "continuation_secret: "),
    ],
)
def test_what_run_refuses_check_config_refuses(  # a bad agent_state_url: refused on load
    tmp_path: Path, extra: dict[str, object], error: str
) -> None:
    with pytest.raises(ConfigError, match=error.replace("(", r"\(")):
        check_offline(settings_for("sqlite:///unused.db", tmp_path, **extra))


def test_bad_routing_and_webhook_files_are_named(tmp_path: Path) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("intents:\n  billing: {}\n")
    settings = settings_for("sqlite:///u.db", tmp_path, **{**AGENTS, "routing_file": routing})
    with pytest.raises(ConfigError, match=r"routing\.yaml"):
        check_offline(settings)
    hooks = tmp_path / "webhooks.yaml"
    hooks.write_text(
        "subscriptions:\n  - id: crm\n    url: http://crm.example.com/hook\n    secret: "
        + "s" * 20
        + "\n    events: ['*']\n"
    )
    with pytest.raises(ConfigError, match=r"webhooks\.yaml.*https"):
        check_offline(settings_for("sqlite:///u.db", tmp_path, webhooks_file=hooks))
