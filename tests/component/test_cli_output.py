"""What the ``ivr-engine`` commands print: each says what it did, in words a user can act on."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from ivr_engine.timeline.migrate import _known_revisions, upgrade
from tests.component.script_runs import CLI, run

BRIDGE = [sys.executable, "-m", "crm_bridge.calls"]
NewDatabase = Callable[[], Coroutine[Any, Any, str]]
HEAD = _known_revisions()[0]


async def _migrate_says(url: str) -> str:
    code, out, err = await run([*CLI, "--database-url", url, "migrate"])
    assert code == 0, err
    return out.strip()


async def _migrate_reports_what_it_did(fresh: str, older: str) -> None:
    said = await _migrate_says(fresh)
    assert said.startswith(f"timeline schema migrated from (none) to {HEAD} ("), said
    said = await _migrate_says(fresh)
    assert said.startswith(f"timeline schema already at {HEAD} ("), said
    await upgrade(older, "0002")
    said = await _migrate_says(older)
    assert said.startswith(f"timeline schema migrated from 0002 to {HEAD} ("), said


async def test_migrate_says_what_it_did_on_sqlite(tmp_path: Path) -> None:
    await _migrate_reports_what_it_did(
        f"sqlite:///{tmp_path / 'fresh.db'}", f"sqlite:///{tmp_path / 'older.db'}"
    )


@pytest.mark.postgres
async def test_migrate_says_what_it_did_on_postgresql(new_pg_database: NewDatabase) -> None:
    fresh, older = await new_pg_database(), await new_pg_database()
    await _migrate_reports_what_it_did(fresh, older)


async def test_prompts_build_prints_the_table_and_checks_the_files(tmp_path: Path) -> None:
    """As prompts/README.md says of both commands (and ``python -m ivr_engine.prompt_builder``
    does): a table of id, seconds and bytes, then the count."""
    argv = [*CLI, "prompts", "build", "--out", str(tmp_path), "--only", "welcome", "goodbye"]
    code, out, err = await run(argv)
    assert code == 0, err
    header, *rows, last = out.splitlines()
    assert header.split() == ["id", "seconds", "bytes"]
    assert [row.split()[0] for row in rows] == ["welcome", "goodbye"]
    for row in rows:
        _, seconds, size = row.split()
        assert float(seconds) > 0.3
        assert int(size) == (tmp_path / f"en/ivr-engine/{row.split()[0]}.wav").stat().st_size
    assert last == f"built 2 prompt file(s) under {tmp_path}"


@pytest.mark.parametrize("key", ["agi_port", "http_port", "esl_port"])
async def test_a_port_in_use_names_its_setting(key: str, tmp_path: Path) -> None:
    """Exit code 2, as any setting that cannot work (and as ``run --workers N`` says it);
    the HTTP API's no-authentication warning only once its port is bound, not before."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        ports = {"agi_port": 0, "http_port": 0, "esl_port": 0, key: port}
        argv = [*CLI, "--database-url", f"sqlite:///{tmp_path / 't.db'}", "run"]
        for name, value in ports.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        env = {"IVR_ENGINE_SPOOL_DIR": str(tmp_path / "spool")}
        code, _, err = await run(argv, env=env)
    assert code == 2, err
    assert "Traceback" not in err
    assert f"{key}: cannot listen on 127.0.0.1:{port}: " in err
    assert "another ivr-engine, or another program, is there" in err
    assert "no authentication" not in err


async def test_agents_import_replaces_an_existing_file_only_with_force(tmp_path: Path) -> None:
    """The default --out is the shipped sample roster, config/agents.yaml: importing without
    --out must not quietly replace it (or any roster edited by hand)."""
    source, out = tmp_path / "agents.csv", tmp_path / "agents.yaml"
    source.write_text("agent_id,name,sip_endpoint,password\na1,Ann,PJSIP/a1,correct-horse\n")
    out.write_text("# edited by hand\n")
    argv = [*CLI, "agents", "import", str(source), "--out", str(out)]
    code, _, err = await run(argv)
    assert code == 2 and f"{out} exists: give --force to replace it" in err
    assert out.read_text() == "# edited by hand\n"
    code, said, err = await run([*argv, "--force"])
    assert code == 0 and f"wrote 1 agent(s) to {out}" in said, err
    assert "agent_id: a1" in out.read_text()


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["agents", "import"], ["default config/agents.yaml", "only with --force"]),
        (["prompts", "build"], ["default prompts/prompts.yaml", "(default prompts)"]),
        (["bridge"], ["or both as reader,consumer (the default"]),
        (["run"], ["default 4573", "default 8080", "default 1"]),
        (
            [],
            ["default sqlite:///data/ivr-engine.db", "WARNING or ERROR, any case", "default INFO"],
        ),
        (["bridge-alone"], ["or both as reader,consumer (the default", "WARNING or ERROR, any"]),
    ],
)
async def test_help_shows_the_defaults(argv: list[str], shown: list[str]) -> None:
    command = BRIDGE if argv == ["bridge-alone"] else [*CLI, *argv]
    code, out, err = await run([*command, "--help"], env={"COLUMNS": "400"})
    assert code == 0, err
    for text in shown:
        assert text in out, out


@pytest.mark.parametrize("command", [[*CLI, "check-config"], BRIDGE])
async def test_an_unknown_log_level_lists_the_choices(command: list[str]) -> None:
    code, _, err = await run([*command, "--log-level", "verbose"])
    assert code == 2 and "Traceback" not in err
    assert "--log-level: invalid choice: 'VERBOSE'" in err
    assert "(choose from 'DEBUG', 'INFO', 'WARNING', 'ERROR')" in err


async def test_log_level_in_the_environment_lists_the_choices_too() -> None:
    code, _, err = await run([*CLI, "check-config"], env={"IVR_ENGINE_LOG_LEVEL": "verbose"})
    assert code == 2
    assert "Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in err
    code, _, err = await run([*CLI, "check-config", "--log-level", "warning"])
    assert code == 0, err


async def test_the_demo_logs_only_real_problems(tmp_path: Path) -> None:
    """Its throw-away engine's "engine ready" and no-authentication warning were noise on
    stderr; --log-level on the command line still shows the engine's INFO lines."""
    env = {"IVR_ENGINE_SPOOL_DIR": str(tmp_path / "spool")}
    code, out, err = await run([*CLI, "demo"], env=env)
    assert code == 0 and "== returning caller" in out, err
    assert err == ""
    code, out, err = await run([*CLI, "demo", "--log-level", "info"], env=env)
    assert code == 0 and "== returning caller" in out, err
    assert "engine ready" in err and "no authentication" not in err


async def test_bridge_without_a_switch_says_how_to_name_one(tmp_path: Path) -> None:
    env = {"IVR_ENGINE_SPOOL_DIR": str(tmp_path / "spool"), "IVR_ENGINE_AMI_URL": ""}
    code, _, err = await run([*CLI, "bridge"], env=env)
    assert code == 2
    said = err.splitlines()[-1]
    assert said.startswith("call bridge settings: the reader role needs ami_url (Asterisk) or ")
    for how in ("IVR_ENGINE_AMI_URL", "IVR_ENGINE_ESL_URL", "--esl-url", "--ami-url"):
        assert how in said
    assert "Value error" not in err and "<settings>" not in err


async def test_settings_errors_are_in_our_words_without_pydantics_prefix() -> None:
    env = {"IVR_ENGINE_DATABASE_URL": "mysql://db/ivr"}
    code, _, err = await run([*CLI, "check-config"], env=env)
    assert code == 2
    assert err.splitlines()[-1] == (
        "environment: database_url (env IVR_ENGINE_DATABASE_URL): unsupported scheme 'mysql' "
        "in 'mysql://db/ivr': use sqlite:///PATH/TO/FILE.db or postgresql://USER@HOST:PORT/DB"
    )
