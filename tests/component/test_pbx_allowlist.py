"""A FastAGI connection from a host not in pbx_allowlist is closed unread; one from a PBX
it names is served (real engine, real sockets)."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from ivr_engine.app import Engine
from ivr_engine.cli import main
from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import load_settings
from tests.component.test_ivr_flow import REPO, settings_for


async def agi_session(port: int) -> bytes:
    """Asterisk's side: the header block, then whatever the engine sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        header = "agi_network: yes\nagi_network_script: ivr?menu=main\nagi_callerid: 5550100\n\n"
        writer.write(header.encode())
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.readline()
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def test_a_peer_outside_the_allowlist_is_cut_off_and_said_once(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine(settings_for(sqlite_url, tmp_path, pbx_allowlist=["192.0.2.0/24"]))
    await engine.start()
    try:
        assert engine.agi is not None
        with caplog.at_level(logging.WARNING):
            assert await agi_session(engine.agi.port) == b""
            assert await agi_session(engine.agi.port) == b""
        refused = [r for r in caplog.records if "not in pbx_allowlist" in r.getMessage()]
        assert len(refused) == 1 and "127.0.0.1" in refused[0].getMessage()
        assert engine.agi.active_calls == 0
    finally:
        await engine.stop()


async def test_a_pbx_the_allowlist_names_is_served(sqlite_url: str, tmp_path: Path) -> None:
    engine = Engine(settings_for(sqlite_url, tmp_path, pbx_allowlist=["127.0.0.0/8"]))
    await engine.start()
    try:
        assert engine.agi is not None
        first = await agi_session(engine.agi.port)
        assert first.startswith(b'EXEC "Read" "IVR_READ,ivr-engine/welcome')
    finally:
        await engine.stop()


async def test_fastagi_open_to_the_network_with_the_opt_out_is_warned_about(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for allowlist, warned in (([], True), (["10.0.0.5"], False)):
        engine = Engine(
            settings_for(
                sqlite_url,
                tmp_path,
                agi_host="0.0.0.0",
                pbx_allowlist=allowlist,
                allow_any_pbx=True,
            )
        )
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            await engine.start()
        await engine.stop()
        said = any("pbx_allowlist not set" in r.getMessage() for r in caplog.records)
        assert said is warned


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"IVR_ENGINE_AGI_HOST": "0.0.0.0"}, "agi_host"),
        ({"IVR_ENGINE_ESL_HOST": "10.0.0.7", "IVR_ENGINE_ESL_PORT": "0"}, "esl_host"),
        ({"IVR_ENGINE_AGI_HOST": "::"}, "agi_host"),
    ],
)
def test_a_call_port_open_to_the_network_without_an_allowlist_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    environ: dict[str, str],
    key: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # no config/engine.yaml here
    monkeypatch.setenv("IVR_ENGINE_DATABASE_URL", f"sqlite:///{tmp_path / 'never.db'}")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["run"]) == 2
    error = capsys.readouterr().err
    assert f"{key} (env IVR_ENGINE_{key.upper()}):" in error and "pbx_allowlist is empty" in error
    assert "IVR_ENGINE_PBX_ALLOWLIST" in error and "allow_any_pbx" in error
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize(
    "environ",
    [
        {"IVR_ENGINE_AGI_HOST": "0.0.0.0", "IVR_ENGINE_PBX_ALLOWLIST": "10.0.0.5"},
        {"IVR_ENGINE_AGI_HOST": "0.0.0.0", "IVR_ENGINE_ALLOW_ANY_PBX": "true"},
        {"IVR_ENGINE_ESL_HOST": "0.0.0.0"},  # no esl_port: no ESL listener
        {"IVR_ENGINE_AGI_HOST": "localhost", "IVR_ENGINE_ESL_PORT": "8084"},
    ],
)
def test_an_allowlist_the_opt_out_or_loopback_is_accepted(environ: dict[str, str]) -> None:
    load_settings(environ=environ)


def test_the_docker_image_defaults_need_the_allowlist() -> None:
    """docker/Dockerfile listens on 0.0.0.0 and says to set IVR_ENGINE_PBX_ALLOWLIST."""
    dockerfile = (REPO / "docker/Dockerfile").read_text(encoding="utf-8")
    image = dict(re.findall(r"(IVR_ENGINE_\w+)=(\S+)", dockerfile.split("\nENV ", 1)[1]))
    assert image["IVR_ENGINE_AGI_HOST"] == "0.0.0.0"
    tokens = {"IVR_ENGINE_API_TOKENS": "t" * 40}
    with pytest.raises(ConfigError, match="pbx_allowlist"):
        load_settings(environ={**image, **tokens})
    load_settings(environ={**image, **tokens, "IVR_ENGINE_PBX_ALLOWLIST": "10.0.0.5"})
    header = dockerfile.split("\nFROM ", 1)[0]
    assert "IVR_ENGINE_PBX_ALLOWLIST" in header and "refuses" in header
