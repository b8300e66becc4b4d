"""The FreeSWITCH static fallback menu (extension ivr-fail) generated from the menu YAML, its
XML structure as mod_dialplan_xml reads it, the drift check and the CLI."""

from __future__ import annotations

import dataclasses
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import Menu
from ivr_engine.fallback_drift import check_fallback_dialplan
from ivr_engine.fallback_freeswitch import (
    SCRIPT_VARIABLE,
    attr,
    find_generated_xml,
    render_body_xml,
    render_fallback_xml,
)
from ivr_engine.menu_config import load_menu_files
from ivr_engine.personalize import menu_prompt_sequence, static_menu
from ivr_engine.telephony.esl import outbound
from tests.unit.test_fallback_dialplan import (
    SAMPLE_MENU_ROUTES,
    _main_text,
    _menus_dir,
    _moved,
    _run,
)

ROOT = Path(__file__).resolve().parents[2]
FS_DIR = ROOT / "dialplans" / "freeswitch"
GENERATED = FS_DIR / "ivr-engine" / "ivr-fail-main.xml"
APPLICATIONS = {"event", "unset", "set", "multiset", "answer", "read", "transfer"}


def _sample() -> Menu:
    return load_menu_files(ROOT / "config" / "menus")["main"][1]


def _body(text: str) -> ET.Element:
    """The generated file parsed (comments around the one <include> element are allowed)."""
    return ET.fromstring(text)


def _extensions(text: str) -> dict[str, ET.Element]:
    return {e.get("name", ""): e for e in _body(text).iter("extension")}


def _keys(text: str) -> dict[str, tuple[str, str]]:
    """digit -> (intent, target), read from each key extension's multiset."""
    keys = {}
    for name, extension in _extensions(text).items():
        if match := re.fullmatch(r"ivr-fail-key-(\d)", name):
            (multiset,) = [
                a for a in extension.iter("action") if a.get("application") == "multiset"
            ]
            values = dict(p.split("=", 1) for p in multiset.get("data", "").split(" "))
            assert values["IVR_OUTCOME"] == "routed"
            keys[match[1]] = (values["IVR_INTENT"], values["IVR_TARGET"])
    return keys


def _reads(text: str) -> list[list[str]]:
    """The prompt files of each read: the first try, then the no-input and invalid retries."""
    return [
        a.get("data", "").split(" ")[2].removeprefix("file_string://").split("!")
        for a in _body(text).iter()
        if a.get("application") == "read"
    ]


def test_the_committed_file_is_what_the_command_generates_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Golden output: dialplans/freeswitch/ivr-engine/ivr-fail-main.xml is the command's
    output for the sample menu (regenerate it after editing config/menus/main.yaml)."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "ivr-fail-main.xml"
    args = ("dialplan", "fallback", "--pbx", "freeswitch", "--output", str(out))
    assert _run(monkeypatch, Path("config/menus"), *args) == 0
    assert out.read_text() == GENERATED.read_text()
    assert _keys(GENERATED.read_text()) == SAMPLE_MENU_ROUTES


def test_the_default_pbx_is_still_asterisk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    assert _run(monkeypatch, Path("config/menus"), "dialplan", "fallback") == 0
    assert capsys.readouterr().out == (ROOT / "dialplans" / "ivr-fail-main.conf").read_text()
    with pytest.raises(SystemExit) as refused:
        _run(monkeypatch, Path("config/menus"), "dialplan", "fallback", "--pbx", "fs")
    assert refused.value.code == 2


def test_the_sample_includes_the_generated_file_inside_its_context() -> None:
    text = (FS_DIR / "ivr-engine.xml").read_text()
    context = ET.fromstring(text).find("context")
    assert context is not None and context.get("name") == "ivr-engine"
    (directive,) = [e for e in context if e.tag == "X-PRE-PROCESS"]
    assert directive.attrib == {"cmd": "include", "data": "ivr-engine/ivr-fail-main.xml"}
    assert 'name="ivr-fail' not in text  # only the generated one
    assert text.lower().count("x-pre-process") == 1  # a comment naming it would be dropped


def test_the_structure_is_what_mod_dialplan_xml_reads() -> None:
    """Extensions of conditions (field, expression: a valid regex) holding only actions and
    anti-actions; anti-actions only after a destination_number condition without any, so an
    extension never matches another destination through them (an anti-action counts as a
    match in parse_exten); applications the generator means to use; no pre-processor text."""
    text = GENERATED.read_text()
    root = _body(text)
    assert root.tag == "include" and {c.tag for c in root} == {"extension"}
    for extension in root:
        conditions = list(extension)
        assert conditions and {c.tag for c in conditions} == {"condition"}
        assert conditions[0].get("field") == "destination_number"
        assert not list(conditions[0].iter("anti-action"))
        for condition in conditions:
            assert set(condition.attrib) == {"field", "expression"}
            re.compile(condition.attrib["expression"])
            assert {a.tag for a in condition} <= {"action", "anti-action"}
            assert {a.get("application") for a in condition} <= APPLICATIONS
        assert not [a for c in conditions[:-1] for a in c]  # actions only in the last one
    assert "$${" not in text and "<!--#" not in text and "x-pre-process" not in text.lower()


def test_the_menu_is_the_engines_static_menu_piece_for_piece() -> None:
    menu = _sample()
    engine = [
        f"{p}.wav"
        for p in menu_prompt_sequence(static_menu(menu, "x"), menu.prompts, greeting=True)
    ]
    first, no_input, invalid = _reads(GENERATED.read_text())
    assert first == engine
    assert no_input == ["ivr-engine/no-input.wav", *engine[1:]]
    assert invalid == ["ivr-engine/invalid-option.wav", *engine[1:]]


def test_moved_keys_make_extensions_with_the_same_keys(tmp_path: Path) -> None:
    path, menu = load_menu_files(_menus_dir(tmp_path, _moved(_main_text())))["main"]
    text = render_fallback_xml(menu, path.as_posix())
    keys = _keys(text)
    assert keys["3"] == ("billing", "queue:billing")
    assert keys["6"] == ("moving", "queue:moving")
    assert keys["7"] == ("roaming", "queue:roaming")
    first = _reads(text)[0]
    assert first[first.index("ivr-engine/label-roaming.wav") + 2] == "digits/7.wav"


def test_tries_timeout_and_fallback_intent_come_from_the_menu(tmp_path: Path) -> None:
    text = _main_text().replace("input_timeout_ms: 5000", "input_timeout_ms: 7500")
    text = text.replace("attempts: 3 ", "attempts: 2 ")
    text = text.replace("fallback_intent: operator", "fallback_intent: billing")
    path, menu = load_menu_files(_menus_dir(tmp_path, text))["main"]
    out = render_fallback_xml(menu, path.as_posix())
    extensions = _extensions(out)
    for step in ("ivr-fail-no-input", "ivr-fail-invalid"):
        tries = extensions[step].findall("condition")[1]
        assert tries.attrib == {"field": "${IVR_FAIL_TRIES}", "expression": "^1{2,}$"}
        (last,) = tries.findall("action")  # after the last try: billing's key, no lead-in
        assert last.attrib["data"] == "ivr-fail-key-6 XML ivr-engine"
    reads = [a.get("data", "") for a in _body(out).iter() if a.get("application") == "read"]
    assert len(reads) == 3 and all(r.endswith(" IVR_FAIL_KEY 7500 #") for r in reads)


def test_another_menu_gets_its_own_extensions(tmp_path: Path) -> None:
    path, menu = load_menu_files(
        _menus_dir(tmp_path, _main_text().replace("menu: main", "menu: sales"))
    )["sales"]
    names = set(_extensions(render_fallback_xml(menu, path.as_posix())))
    assert "ivr-fail-sales" in names and "ivr-fail-sales-key-6" in names
    assert not [n for n in names if n.startswith("ivr-fail-key")]


def test_the_entry_clears_the_engines_variables_and_the_script() -> None:
    from tests.unit.test_dialplan_samples import engine_variables

    assert SCRIPT_VARIABLE == outbound.SCRIPT_VARIABLE
    entry = _extensions(GENERATED.read_text())["ivr-fail"]
    unset = {a.get("data") for a in entry.iter("action") if a.get("application") == "unset"}
    assert engine_variables() - {"IVR_DECISION"} | {SCRIPT_VARIABLE} <= unset


# --------------------------------------------------------------------------- hostile values


def _with_target(menu: Menu, target: str) -> Menu:
    first = dataclasses.replace(menu.options[0], target=target)
    return dataclasses.replace(menu, options=(first, *menu.options[1:]))


@pytest.mark.parametrize(
    "target",
    [
        'queue:x"/><action application="system" data="rm -rf /',  # leave the attribute
        "queue:x IVR_AGENT_ENDPOINT=user/mallory",  # a second multiset pair
        "queue:${system(id)}",  # expanded when the action runs
        "queue:a!b",  # file_string's separator
        "queue:a,b",
        "queue:a'b",
        "queue:a\nb",
    ],
)
def test_a_value_that_could_change_the_dialplan_is_refused(target: str) -> None:
    with pytest.raises(ValueError, match="not safe in a dialplan"):
        render_body_xml(_with_target(_sample(), target), "ivr-fail")


def test_a_hostile_prompt_is_refused() -> None:
    menu = _sample()
    prompts = dataclasses.replace(menu.prompts, invalid="ivr-engine/x.wav!/etc/passwd")
    with pytest.raises(ValueError, match="not safe in a dialplan"):
        render_body_xml(dataclasses.replace(menu, prompts=prompts), "ivr-fail")


@pytest.mark.parametrize(
    "source", ["menus--old/main.yaml", "$${base_dir}/main.yaml", "x-pre-process/m.yaml", "a-"]
)
def test_a_menu_path_that_would_break_the_comments_is_refused(source: str) -> None:
    with pytest.raises(ValueError, match="cannot be written into an XML comment"):
        render_fallback_xml(_sample(), source)


def test_attribute_values_are_escaped() -> None:
    assert attr('a&b<c"d>') == "a&amp;b&lt;c&quot;d>"
    assert ET.fromstring(f'<x v="{attr("a&b<c")}"/>').get("v") == "a&b<c"


def test_a_hostile_menu_file_name_through_the_cli_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    menus = tmp_path / "menus--v2"
    menus.mkdir()
    (menus / "main.yaml").write_text(_main_text())
    assert _run(monkeypatch, menus, "dialplan", "fallback", "--pbx", "freeswitch") == 2
    err = capsys.readouterr().err
    assert "main.yaml" in err and "cannot be written into an XML comment" in err


# --------------------------------------------------------------------------- drift


def _install(tmp_path: Path) -> Path:
    """ivr-engine.xml and ivr-engine/ivr-fail-main.xml, as in conf/dialplan/."""
    etc = tmp_path / "dialplan"
    shutil.copytree(FS_DIR, etc)
    return etc / "ivr-engine.xml"


def test_the_committed_freeswitch_dialplan_matches_the_sample_menu(tmp_path: Path) -> None:
    line = check_fallback_dialplan(_install(tmp_path), load_menu_files(ROOT / "config/menus"))
    assert line.startswith("ok: dialplan ") and "extension ivr-fail (" in line
    assert "ivr-engine/ivr-fail-main.xml" in line


def test_a_menu_edited_since_is_reported_with_the_keys_and_the_fix(tmp_path: Path) -> None:
    dialplan = _install(tmp_path)
    menus = _menus_dir(tmp_path, _moved(_main_text()))
    with pytest.raises(ConfigError) as caught:
        check_fallback_dialplan(dialplan, load_menu_files(menus))
    message = str(caught.value)
    assert message.startswith(f"{dialplan.parent / 'ivr-engine' / 'ivr-fail-main.xml'}: ")
    assert "extension ivr-fail no longer matches" in message
    assert "key 3 is moving -> queue:moving in the dialplan, billing -> queue:billing" in message
    assert "key 7 is nothing in the dialplan, roaming -> queue:roaming in the menu" in message
    assert "ivr-engine dialplan fallback --pbx freeswitch --menu main --output " in message
    assert "`reloadxml`" in message


def test_a_changed_timeout_alone_is_drift_too(tmp_path: Path) -> None:
    text = _main_text().replace("input_timeout_ms: 5000", "input_timeout_ms: 6000")
    with pytest.raises(ConfigError, match="prompts, tries, timeout or fallback intent differ"):
        check_fallback_dialplan(_install(tmp_path), load_menu_files(_menus_dir(tmp_path, text)))


def test_a_generated_file_edited_by_hand_is_reported(tmp_path: Path) -> None:
    dialplan = _install(tmp_path)
    generated = dialplan.parent / "ivr-engine" / "ivr-fail-main.xml"
    generated.write_text(
        generated.read_text().replace("IVR_FAIL_KEY 5000 #", "IVR_FAIL_KEY 9000 #")
    )
    with pytest.raises(ConfigError, match="extension ivr-fail was edited by hand since"):
        check_fallback_dialplan(dialplan, load_menu_files(ROOT / "config" / "menus"))


def test_the_old_hand_written_freeswitch_menu_is_reported_as_such(tmp_path: Path) -> None:
    old = tmp_path / "ivr-engine.xml"
    old.write_text(
        '<include><context name="ivr-engine"><extension name="ivr-fail"/></context></include>'
    )
    with pytest.raises(ConfigError) as caught:
        check_fallback_dialplan(old, load_menu_files(ROOT / "config" / "menus"))
    assert "ivr-fail extension is hand-written" in str(caught.value)
    assert "--pbx freeswitch --menu main --output FILE" in str(caught.value)


def test_find_generated_xml_reads_marker_and_body() -> None:
    (found,) = find_generated_xml(GENERATED.read_text())
    assert (found.menu, found.context, found.source, found.pbx) == (
        "main",
        "ivr-fail",
        "config/menus/main.yaml",
        "freeswitch",
    )
    assert found.body.startswith("<include>\n") and found.body.endswith("</include>\n")


def test_check_config_reads_both_pbxs_and_fails_on_drift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    dialplan = _install(tmp_path)
    asterisk = ROOT / "dialplans" / "ivr-engine.conf"
    menus = _menus_dir(tmp_path, _moved(_main_text()))
    assert _run(monkeypatch, menus, "check-config", "--dialplan", str(dialplan)) == 2
    assert "extension ivr-fail no longer matches" in capsys.readouterr().err
    out = dialplan.parent / "ivr-engine" / "ivr-fail-main.xml"
    args = ("dialplan", "fallback", "--pbx", "freeswitch", "--output", str(out))
    assert _run(monkeypatch, menus, *args) == 0
    assert "wrote the freeswitch static fallback menu of main" in capsys.readouterr().out
    assert _run(monkeypatch, menus, "check-config", "--dialplan", str(dialplan)) == 0
    assert "static fallback extension ivr-fail" in capsys.readouterr().out
    # the Asterisk one, generated from the old menu, is still told apart and reported
    both = ("check-config", "--dialplan", str(dialplan), "--dialplan", str(asterisk))
    assert _run(monkeypatch, menus, *both) == 2
    assert "[ivr-fail] no longer matches" in capsys.readouterr().err
