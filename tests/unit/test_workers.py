"""The pure parts of ``ivr-engine run --workers N``: the ``workers`` setting and its start-up
checks, worker roles, the restart back-off, the settings handed to a worker, port holding."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from ivr_engine.cli import _parser
from ivr_engine.cli import _settings as cli_settings
from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import Settings, load_settings
from ivr_engine.workers import WorkerRole
from ivr_engine.workers.child import settings_json
from ivr_engine.workers.port_reservation import reserve_port
from ivr_engine.workers.worker_process import Worker, describe_exit

AGENTS = Path("config/agents.yaml")
TOKEN = "a" * 40


def test_one_worker_is_the_default() -> None:
    assert load_settings(environ={}).workers == 1


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_a_bad_worker_count_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match=r"environment: workers \(env IVR_ENGINE_WORKERS\)"):
        load_settings(environ={"IVR_ENGINE_WORKERS": value})


def test_agents_with_agent_state_in_process_memory_are_refused_with_workers() -> None:
    for state in ({}, {"agent_state_url": "memory://"}):
        with pytest.raises(ConfigError) as refused:
            load_settings(environ={}, overrides={"workers": 2, "agents_file": AGENTS, **state})
        text = str(refused.value)
        assert text.startswith(("settings: agent_state_url", "command line: agent_state_url"))
        assert "workers is 2" in text and "IVR_ENGINE_AGENT_STATE_URL" in text


def test_agents_with_shared_state_or_one_worker_are_accepted() -> None:
    shared = {"agents_file": AGENTS, "agent_state_url": "redis://127.0.0.1:6379/0"}
    assert load_settings(environ={}, overrides={"workers": 4, **shared}).workers == 4
    assert load_settings(environ={}, overrides={"agents_file": AGENTS}).workers == 1


def test_the_command_line_sets_workers() -> None:
    args = _parser().parse_args(["run", "--workers", "3"])
    assert cli_settings(args).workers == 3


def test_roles_worker_0_leads() -> None:
    assert WorkerRole(0, 2).leads and not WorkerRole(1, 2).leads
    assert WorkerRole(1, 2).name == "worker 1"
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        WorkerRole(2, 2)


def test_restart_back_off_doubles_while_dying_young_and_resets_after_a_healthy_run() -> None:
    worker = Worker(WorkerRole(1, 2))
    delays = []
    for _ in range(7):
        worker.started = 100.0
        delays.append(worker.backoff_after_death(now=105.0))
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    worker.started = 100.0
    assert worker.backoff_after_death(now=100.0 + 61) == 1


def test_settings_reach_the_worker_whole_secrets_included() -> None:
    settings = Settings(
        api_tokens=[TOKEN, "b" * 40],
        admin_token=TOKEN,
        spool_dir=Path("/tmp/spool"),
        workers=2,
        esl_port=8084,
    )
    again = Settings.model_validate(json.loads(settings_json(settings)))
    assert again == settings
    assert [t.get_secret_value() for t in again.api_tokens] == [TOKEN, "b" * 40]


def test_exits_are_described_for_the_log() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(2) == "exit code 2"


def test_a_held_port_is_shared_by_listeners_but_accepts_nothing_itself() -> None:
    with reserve_port("127.0.0.1", 0) as held:
        port = held.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        with socket.socket() as listener:  # as a worker's server socket
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with pytest.raises(OSError):  # another supervisor (engine) cannot reserve it too
            reserve_port("127.0.0.1", port)


def test_an_engine_that_fails_to_start_is_stopped_so_the_process_can_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, a worker (or the one engine) whose start failed after opening the timeline
    kept its threads and never exited: the supervisor waited for it forever."""
    import asyncio

    from ivr_engine import engine_process

    steps: list[str] = []

    class FailingEngine:
        def __init__(self, settings: object) -> None:
            pass

        async def start(self) -> None:
            steps.append("start")
            raise ConfigError("agent state store unreachable")

        async def stop(self) -> None:
            steps.append("stop")

    monkeypatch.setattr(engine_process, "Engine", FailingEngine)
    with pytest.raises(ConfigError):
        asyncio.run(engine_process.run_engine(Settings()))
    assert steps == ["start", "stop"]
