"""The ``ivr-engine`` command, start-up checks, and the classic (stdin/stdout) AGI script."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import pytest

from ivr_engine.checked_menus import load_checked_menus
from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import Settings
from ivr_engine.timeline.migrate import upgrade
from tests.component.fake_asterisk import header_block
from tests.component.script_runs import (
    CLASSIC_SCRIPT,
    CLI,
    REPO,
    classic_headers,
    run,
    run_classic_call,
    start,
)


def test_a_broken_prompt_file_stops_start_up_with_its_name(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    shutil.copytree(REPO / "prompts/en", sounds)
    (sounds / "ivr-engine/welcome.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    settings = Settings(menus_dir=REPO / "config/menus", sounds_dir=sounds)
    with pytest.raises(ConfigError, match=r"welcome\.wav"):
        load_checked_menus(settings)


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("label-billing.gsm", b"", "empty: 0 bytes"),
        ("label-billing.gsm", b"\xd8" * 100, "33-byte GSM frames"),
        ("label-billing.ulaw", b"", "empty: 0 bytes"),
        ("label-billing.sln", b"\x01" * 11, "too short"),
    ],
)
def test_an_empty_or_cut_prompt_of_another_format_stops_start_up(
    tmp_path: Path, name: str, content: bytes, why: str
) -> None:
    """Asterisk plays whichever format suits the channel's codec: an empty ``.gsm`` or
    ``.ulaw`` (beside a sane ``.wav`` or instead of it) is dead air for some callers."""
    sounds = tmp_path / "sounds"
    shutil.copytree(REPO / "prompts/en", sounds)
    (sounds / "ivr-engine" / name).write_bytes(content)
    settings = Settings(menus_dir=REPO / "config/menus", sounds_dir=sounds)
    with pytest.raises(ConfigError) as caught:
        load_checked_menus(settings)
    assert f"{sounds / 'ivr-engine' / name}: " in str(caught.value) and why in str(caught.value)
    (sounds / "ivr-engine/label-billing.wav").unlink()  # the other format alone: the same
    with pytest.raises(ConfigError, match=re.escape(f"{name}: ")):
        load_checked_menus(settings)


def test_a_missing_prompt_stops_start_up(tmp_path: Path) -> None:
    sounds = tmp_path / "sounds"
    shutil.copytree(REPO / "prompts/en", sounds)
    (sounds / "ivr-engine/label-billing.wav").unlink()
    settings = Settings(menus_dir=REPO / "config/menus", sounds_dir=sounds)
    with pytest.raises(ConfigError, match="label-billing"):
        load_checked_menus(settings)


async def test_check_config_and_bad_settings_exit_codes(tmp_path: Path) -> None:
    code, out, _ = await run([*CLI, "check-config"])
    assert code == 0 and "ok: 1 menu(s): main" in out
    code, _, err = await run([*CLI, "check-config"], env={"IVR_ENGINE_AGI_PORT": "99999"})
    assert code == 2
    assert "environment: agi_port (env IVR_ENGINE_AGI_PORT)" in err


async def test_demo_shows_a_reordered_menu_for_the_returning_caller(tmp_path: Path) -> None:
    env = {
        "IVR_ENGINE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "IVR_ENGINE_SPOOL_DIR": str(tmp_path / "spool"),
    }
    code, out, err = await run([*CLI, "demo"], env=env)
    assert code == 0, err
    # A throw-away timeline: the configured one is not touched, and a second run tells the
    # same story (its "new" caller is new again, so key 6 is still billing).
    assert not (tmp_path / "demo.db").exists() and not (tmp_path / "spool").exists()
    code, again, err = await run([*CLI, "demo"], env=env)
    assert code == 0, err
    ids = re.compile(r"'IVR_CUSTOMER_ID': '[^']*'")  # fresh customers each run
    assert ids.sub("", again) == ids.sub("", out)
    assert "'IVR_INTENT': 'billing'" in out.split("== returning caller")[0]
    new, returning = out.split("== returning caller")
    assert "digits/6" in new.split("ivr-engine/label-billing")[1].split("\n")[0][:40]
    assert "ivr-engine/shortcut-topic-billing" in returning
    menu_line = next(line for line in returning.splitlines() if "heard #2" in line)
    assert menu_line.split()[2:6] == [
        "ivr-engine/for", "ivr-engine/label-billing", "ivr-engine/press", "digits/1"
    ]  # fmt: skip
    assert "enter-account-number" not in returning


async def test_classic_agi_script_runs_the_flow_and_stores_the_call(tmp_path: Path) -> None:
    db = tmp_path / "classic.db"
    await upgrade(f"sqlite:///{db}")  # `ivr-engine migrate`: the script itself never migrates
    env = {
        "IVR_ENGINE_DATABASE_URL": f"sqlite:///{db}",
        "IVR_ENGINE_SPOOL_DIR": str(tmp_path / "spool"),
    }
    code, out, err = await run_classic_call(env, "+15557770001")  # the caller presses 1
    assert code == 0, err
    commands = out.splitlines()
    assert commands[0].startswith('EXEC "Read" "IVR_READ,ivr-engine/welcome&')
    assert commands[-1] == (
        'EXEC "MSet" "IVR_INTENT=new_service,IVR_TARGET=queue:sales,IVR_CUSTOMER_ID=,'
        'IVR_DECISION=static,IVR_VERIFIED=0,IVR_OUTCOME=routed"'
    )
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT channel, intent FROM timeline_events").fetchall()
    assert rows == [("voice", "new_service")]


async def test_classic_agi_script_runs_the_call_when_its_spool_cannot_be_made(
    tmp_path: Path,
) -> None:
    """The spool directory cannot be created (its parent is a file here; a read-only
    parent does the same for a non-root user): the caller still gets the menu and the
    routing, the call is written to the database, and a warning says why no spool."""
    db = tmp_path / "classic.db"
    await upgrade(f"sqlite:///{db}")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {
        "IVR_ENGINE_DATABASE_URL": f"sqlite:///{db}",
        "IVR_ENGINE_SPOOL_DIR": str(blocker / "spool"),
    }
    code, out, err = await run_classic_call(env, "+15557770001")
    assert code == 0, err
    assert out.splitlines()[-1].startswith('EXEC "MSet" "IVR_INTENT=new_service,'), out
    assert "Traceback" not in err
    assert "WARNING" in err and f"{blocker / 'spool'}" in err and "spool" in err
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT channel, intent FROM timeline_events").fetchall()
    assert rows == [("voice", "new_service")]


async def _open_for_writing(fifo: Path, limit_s: float = 30) -> int:
    """A write end of ``fifo`` once a reader has it open (ENXIO until then)."""
    async with asyncio.timeout(limit_s):
        while True:
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            await asyncio.sleep(0.01)


async def test_classic_agi_a_hangup_during_start_up_is_an_abandoned_call(
    tmp_path: Path,
) -> None:
    """Asterisk sends SIGHUP when the caller hangs up; one that comes while the script is
    still starting (here: held reading its settings file, a FIFO) must not kill it: the
    call is recorded as abandoned and no AGI command is sent."""
    db = tmp_path / "classic.db"
    await upgrade(f"sqlite:///{db}")
    config = tmp_path / "engine.yaml"
    os.mkfifo(config)
    env = {
        "IVR_ENGINE_CONFIG": str(config),
        "IVR_ENGINE_DATABASE_URL": f"sqlite:///{db}",
        "IVR_ENGINE_SPOOL_DIR": str(tmp_path / "spool"),
        "PYTHONPATH": str(REPO),
    }
    headers = classic_headers("+15557770002")
    proc = await start([sys.executable, str(CLASSIC_SCRIPT)], env=env)
    try:
        writing = await _open_for_writing(config)  # the script is reading its settings
        proc.send_signal(signal.SIGHUP)  # the caller hangs up now
        later = tmp_path / "engine.yaml.new"
        later.write_text("{}\n")
        os.replace(later, config)  # later reads find a plain file
        os.write(writing, b"{}\n")
        os.close(writing)
        async with asyncio.timeout(60):
            out, err = await proc.communicate(header_block(headers))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, (proc.returncode, err.decode())
    assert out == b""  # hung up: nothing sent to the channel
    with sqlite3.connect(db) as conn:
        rows = [json.loads(data) for (data,) in conn.execute("SELECT data FROM timeline_events")]
    assert [row["outcome"] for row in rows] == ["abandoned"], rows


@pytest.mark.parametrize("database", ["missing-file", "empty-file", "postgres"])
async def test_classic_agi_on_an_unmigrated_database_says_to_migrate(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    """The script never migrates: on a database ``ivr-engine migrate`` has not run on, the
    caller still gets the static menu and the call is spooled, and the warnings say what
    to run (was: a bare "no such table: identities" / "unable to open database file")."""
    if database == "postgres":
        request.applymarker(pytest.mark.postgres)
        url = await request.getfixturevalue("new_pg_database")()
    else:
        db = tmp_path / "classic.db"
        if database == "empty-file":
            sqlite3.connect(db).close()
        url = f"sqlite:///{db}"
    env = {
        "IVR_ENGINE_DATABASE_URL": url,
        "IVR_ENGINE_SPOOL_DIR": str(tmp_path / "spool"),
        # The lookup's own error is under test, not the deadline: a fresh process's first
        # PostgreSQL connection on a loaded CI machine once took longer than 150 ms.
        "IVR_ENGINE_DECISION_DEADLINE_MS": "5000",
    }
    code, out, err = await run_classic_call(env, "+15557770003")
    assert code == 0, err
    assert "IVR_DECISION=static,IVR_VERIFIED=0,IVR_OUTCOME=routed" in out.splitlines()[-1]
    warnings = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert warnings and all("run `ivr-engine migrate`" in line for line in warnings), err
    assert (tmp_path / "spool" / "calls.jsonl").stat().st_size > 0  # kept for later


async def test_classic_agi_script_reports_a_configuration_error_in_one_line(
    tmp_path: Path,
) -> None:
    env = {
        "IVR_ENGINE_DATABASE_URL": f"sqlite:///{tmp_path / 'classic.db'}",
        "IVR_ENGINE_SPOOL_DIR": str(tmp_path / "spool"),
        "IVR_ENGINE_MENUS_DIR": str(tmp_path / "no-such-menus"),
    }
    code, out, err = await run_classic_call(env, "+15557770001", replies=b"")
    assert code == 2
    assert out == ""  # no AGI command: the dialplan sees no IVR_OUTCOME -> static menu
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "configuration error, static menu" in lines[0]
    assert "no-such-menus" in lines[0]


async def test_failures_outside_the_configuration_are_one_line_not_a_traceback(
    tmp_path: Path,
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        down = closed.getsockname()[1]
    code, _, err = await run(
        [*CLI, "--database-url", f"postgresql://u@127.0.0.1:{down}/x", "migrate"]
    )
    assert code == 1
    assert (
        err.startswith("error: cannot migrate postgresql://u@127.0.0.1:") and "Traceback" not in err
    )
    # a port in use is a configuration error naming its setting: tests/component/test_cli_output.py


@pytest.mark.parametrize(
    ("flite", "says"),
    [
        (None, "flite not found: install the Debian package flite"),
        ("not a program", "flite cannot be run (flite: Permission denied): install the Debian"),
        ("#!/bin/sh\nexit 3\n", "`flite -lv` failed (exit 3, nothing on stderr)"),
    ],
    ids=["missing", "not-executable", "failing"],
)
async def test_prompts_build_without_a_working_flite_says_how_to_fix_it(
    tmp_path: Path, flite: str | None, says: str
) -> None:
    """A flite that is missing, cannot run or fails: one line per command naming the file,
    the first prompt and the fix (not 31 lines, not a traceback), no file written."""
    tools = tmp_path / "bin"
    tools.mkdir()
    ffmpeg = shutil.which("ffmpeg")  # checked first, before any prompt is spoken
    assert ffmpeg is not None, "install the Debian package ffmpeg"
    (tools / "ffmpeg").symlink_to(ffmpeg)
    if flite is not None:
        (tools / "flite").write_text(flite)
        (tools / "flite").chmod(0o755 if flite.startswith("#!") else 0o644)
    env = {"PATH": f"{tools}:/usr/bin:/bin" if flite and flite.startswith("#!") else str(tools)}
    out_dir = tmp_path / "out"
    for argv in (
        [*CLI, "prompts", "build", "--out", str(out_dir)],
        [sys.executable, "-m", "ivr_engine.prompt_builder", "prompts/prompts.yaml", str(out_dir)],
    ):
        code, _, err = await run(argv, env=env)
        assert code in (1, 2) and "Traceback" not in err, err
        lines = [line for line in err.splitlines() if "prompts.yaml" in line]
        assert len(lines) == 1, err
        assert re.search(r"prompts/prompts\.yaml: prompts\.welcome \(and \d+ more\): ", lines[0])
        assert says in lines[0], lines[0]
    assert not out_dir.exists()


_CONVERTS = '#!/bin/sh\ncase "$*" in *-version*) echo "ffmpeg version 5";; *) '


@pytest.mark.parametrize(
    ("ffmpeg", "says"),
    [
        (None, "ffmpeg not found: install the Debian package ffmpeg (apt-get install ffmpeg)"),
        ("not a program", "ffmpeg cannot be run (ffmpeg: Permission denied): install the Debian"),
        ("#!/bin/sh\nexit 3\n", "`ffmpeg -version` failed (exit 3, nothing on stderr): is it"),
        (
            _CONVERTS + 'echo "pipe:0: Invalid data" >&2; exit 183;; esac\n',
            "ffmpeg failed (exit 183, pipe:0: Invalid data)",
        ),
        (_CONVERTS + "exit 0;; esac\n", "ffmpeg produced no audio (it exited 0 and wrote nothing)"),
    ],
    ids=["missing", "not-executable", "failing", "conversion-fails", "no-output"],
)
async def test_prompts_build_without_a_working_ffmpeg_says_so_in_one_line(
    tmp_path: Path, ffmpeg: str | None, says: str
) -> None:
    """An ffmpeg that is missing, cannot run or fails -version: one line with the fix before
    any prompt is spoken; one that fails a conversion: its exit code and its own error, once
    (not pydub's message with its command and temporary files); one that writes nothing is
    said to, not reported as silent audio. No traceback, no file written."""
    tools = tmp_path / "bin"
    tools.mkdir()
    flite = shutil.which("flite")
    assert flite is not None, "install the Debian package flite"
    (tools / "flite").symlink_to(flite)
    if ffmpeg is not None:
        (tools / "ffmpeg").write_text(ffmpeg)
        (tools / "ffmpeg").chmod(0o755 if ffmpeg.startswith("#!") else 0o644)
    out_dir = tmp_path / "out"
    for argv in (
        [*CLI, "prompts", "build", "--out", str(out_dir)],
        [sys.executable, "-m", "ivr_engine.prompt_builder", "prompts/prompts.yaml", str(out_dir)],
    ):
        code, _, err = await run(argv, env={"PATH": str(tools)})
        assert code in (1, 2) and "Traceback" not in err and "Exception" not in err, err
        lines = [line for line in err.splitlines() if "ffmpeg" in line]
        assert len(lines) == 1, err
        assert says in lines[0], lines[0]
        if "exit 183" in says or "no audio" in says:  # a prompt's conversion: named
            assert re.search(
                r"prompts/prompts\.yaml: prompts\.[a-z-]+( \(and \d+ more\))?: ", lines[0]
            )
    assert not out_dir.exists()


async def test_the_settings_file_can_come_from_ivr_engine_config(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text("agi_port: 99999\n")
    code, _, err = await run([*CLI, "check-config"], env={"IVR_ENGINE_CONFIG": str(config)})
    assert code == 2 and f"{config}: agi_port" in err


async def test_common_options_work_before_and_after_the_command(tmp_path: Path) -> None:
    after, before = tmp_path / "after.db", tmp_path / "before.db"
    code, _, err = await run([*CLI, "migrate", "--database-url", f"sqlite:///{after}"])
    assert code == 0, err
    argv = [*CLI, "--database-url", f"sqlite:///{before}", "migrate", "--log-level", "warning"]
    code, _, err = await run(argv)  # an option after the command keeps the one before
    assert code == 0, err
    assert after.exists() and before.exists()
