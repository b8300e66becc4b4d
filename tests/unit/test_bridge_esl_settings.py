"""The bridge's FreeSWITCH settings: ``esl_url`` validated at start-up with errors that say
the fix, one switch per reader; ``steps.event_id`` keeps the AMI ids byte-identical."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from crm_bridge.calls.__main__ import _parser
from crm_bridge.calls.__main__ import _settings as cli_settings
from crm_bridge.calls.model import CallEventKind, event_key
from crm_bridge.calls.settings import BridgeSettings, parse_esl_url
from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import Settings, load_settings

DB = "sqlite:///x.db"
ESL = "esl://:ClueCon@127.0.0.1:8021"
AMI = "ami://ivr:secret@127.0.0.1:5038"


def test_esl_url_parts() -> None:
    assert parse_esl_url(ESL) == ("127.0.0.1", 8021, "ClueCon")
    assert parse_esl_url("esl://:a%3Ab%40c@fs.example:9021") == ("fs.example", 9021, "a:b@c")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ami://:ClueCon@127.0.0.1:8021", "scheme must be esl, not 'ami'"),
        ("127.0.0.1:8021", "scheme must be esl"),
        ("esl://:ClueCon@127.0.0.1", "no port (FreeSWITCH's listen-port, usually 8021)"),
        ("esl://:ClueCon@127.0.0.1:80x", "the port is not a number from 0 to 65535"),
        ("esl://:ClueCon@127.0.0.1:70000", "the port is not a number from 0 to 65535"),
        ("esl://:Clue[Con@127.0.0.1:8021", "not a valid URL"),
        ("esl://:ClueCon@:8021", "no host"),
        ("esl://admin:ClueCon@127.0.0.1:8021", "a password only, no user"),
        ("esl://127.0.0.1:8021", "no password"),
        ("esl://:Clue%0ACon@127.0.0.1:8021", "line break"),
        ("esl://:ClueCon@127.0.0.1:8021/events", "nothing after the port"),
    ],
)
def test_bad_esl_url_is_refused_at_start_up_with_the_fix(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        BridgeSettings.build(esl_url=url, database_url=DB)
    message = str(caught.value)
    assert message.startswith("call bridge settings: esl_url: ")
    assert problem in message and "use esl://:PASSWORD@HOST:8021" in message
    assert "ClueCon" not in message  # the password is not echoed


def test_ami_and_esl_at_once_are_refused() -> None:
    with pytest.raises(ConfigError, match="ami_url and esl_url are both set: one reader"):
        BridgeSettings.build(ami_url=AMI, esl_url=ESL, database_url=DB)


def test_the_reader_needs_one_switch() -> None:
    with pytest.raises(ConfigError, match=r"reader role needs ami_url \(Asterisk\) or esl_url"):
        BridgeSettings.build(database_url=DB)
    consumer = BridgeSettings.build(
        roles=frozenset({"consumer"}), database_url=DB, bus_url="redis://127.0.0.1:6379/0"
    )
    assert consumer.esl_url is None and consumer.ami_url is None


def test_esl_normaliser_config() -> None:
    settings = BridgeSettings.build(
        esl_url=ESL, database_url=DB, esl_source="fs-2", default_region="GB", source="pbx-1"
    )
    config = settings.normaliser()
    assert (config.source, config.inbound_contexts) == ("fs-2", ("public",))
    assert config.default_region == "GB"
    ami = BridgeSettings.build(ami_url=AMI, database_url=DB).normaliser()
    assert (ami.source, ami.inbound_contexts) == ("asterisk", ("from-trunk",))
    with pytest.raises(ConfigError, match="esl_source"):
        BridgeSettings.build(esl_url=ESL, database_url=DB, esl_source="fs:1")


def test_from_engine_an_esl_url_replaces_the_engines_ami_url(tmp_path: Path) -> None:
    engine = Settings(ami_url=AMI, spool_dir=tmp_path)
    assert BridgeSettings.from_engine(engine).ami_url == AMI
    bridge = BridgeSettings.from_engine(engine, esl_url=ESL)
    assert (bridge.ami_url, bridge.esl_url) == (None, ESL)
    with pytest.raises(ConfigError, match="both set"):
        BridgeSettings.from_engine(engine, esl_url=ESL, ami_url=AMI)


def test_from_engine_takes_esl_url_from_the_engines_settings(tmp_path: Path) -> None:
    """``IVR_ENGINE_ESL_URL`` / ``esl_url:`` in the settings file reach ``ivr-engine bridge``
    (the engine's ami_url, used by its own agent tracker, is then not the bridge's)."""
    environ = {"IVR_ENGINE_ESL_URL": ESL, "IVR_ENGINE_AMI_URL": AMI}
    engine = load_settings(None, environ, {"spool_dir": tmp_path})
    bridge = BridgeSettings.from_engine(engine)
    assert (bridge.ami_url, bridge.esl_url) == (None, ESL)


def test_python_m_options() -> None:
    args = _parser().parse_args(
        [
            "--esl-url", ESL, "--esl-source", "fs-9", "--esl-inbound-context", "public",
            "--esl-inbound-context", "from-carrier-*", "--database-url", DB,
        ]
    )  # fmt: skip
    settings = cli_settings(args)
    assert settings.esl_url == ESL and settings.esl_source == "fs-9"
    assert settings.esl_inbound_contexts == ("public", "from-carrier-*")


@pytest.mark.parametrize("call_id", ["1732440000.42", "x" * 190])
@pytest.mark.parametrize("kind", list(CallEventKind))
def test_ami_event_ids_are_unchanged(call_id: str, kind: CallEventKind) -> None:
    """Replay-stable ids: the text of every stored AMI event id must never change."""
    key = event_key("asterisk", call_id, kind, 3)
    if len(call_id) < 100:
        assert key == f"ami:asterisk:{call_id}:{kind.value}:3"
    else:
        digest = hashlib.sha1(call_id.encode(), usedforsecurity=False).hexdigest()
        assert key == f"ami:asterisk:sha1-{digest}:{kind.value}:3"


def test_esl_event_ids() -> None:
    kind = CallEventKind.ENDED
    assert event_key("fs", "u-1", kind, 1, prefix="esl") == "esl:fs:u-1:call.ended:1"
    long = event_key("fs", "y" * 190, kind, 1, prefix="esl")
    assert long.startswith("esl:fs:sha1-") and len(long) <= 200


def test_every_flag_of_the_bridge_says_what_it_is() -> None:
    from crm_bridge.calls.__main__ import _parser

    for action in _parser()._actions:
        if action.dest != "help":
            assert action.help, f"{action.option_strings} has no help"
            assert action.help.split(" (default")[0] != action.dest.replace("_", " ")
