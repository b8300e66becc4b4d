"""agents.yaml follows the same rules for ids and dial strings as the API and CSV import."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr_engine.contact_center.agents_file import parse_agent_profiles
from ivr_engine.desktop import hash_password, parse_agent_directory
from ivr_engine.domain.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

HASH = hash_password("ada-demo-password").encode()
ONE = """agents:
  - agent_id: a1
    name: Ada
    sip_endpoint: PJSIP/agent-100
    skills: {billing: 5}
"""


def test_the_sample_roster_and_a_plain_agent_load() -> None:
    sample = ROOT / "config" / "agents.yaml"
    assert parse_agent_profiles(sample, sample.read_text())
    assert parse_agent_profiles(Path("a.yaml"), ONE)[0].endpoint == "PJSIP/agent-100"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        # a "," becomes extra Dial() options in the dialplan: U(...) runs a subroutine
        (("PJSIP/agent-100", '"PJSIP/agent-100,60,U(evil)"'), "agents[0].sip_endpoint"),
        (("PJSIP/agent-100", '"{origination_caller_id_number=1}user/100"'), "sip_endpoint"),
        (("agent_id: a1", 'agent_id: "a 1"'), "agents[0].agent_id"),
    ],
)
def test_a_dial_string_or_id_outside_the_rules_is_refused(
    change: tuple[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_agent_profiles(Path("a.yaml"), ONE.replace(*change))
    assert key in str(caught.value)


@pytest.mark.parametrize("escaped", ["Ada\\nEve", "Ada\\0", "\\u202Eeve", "Ada\\u2069", "Ada\\x85"])
@pytest.mark.parametrize("key", ["name", "team"])
def test_a_control_character_in_a_name_or_team_is_refused(escaped: str, key: str) -> None:
    """A line break, a NUL or a bidi override (U+202E shows the name reversed) would forge
    what the desktop, the wallboard and the logs show: both readers of the file refuse it."""
    text = ONE.replace("    name: Ada\n", f'    {key}: "{escaped}"\n' if key == "name" else "")
    if key == "team":
        text += f'    name: Ada\n    team: "{escaped}"\n    password_hash: {HASH}\n'
    else:
        text += f"    password_hash: {HASH}\n"
    for parse in (parse_agent_profiles, parse_agent_directory):
        with pytest.raises(ConfigError) as caught:
            parse(Path("conf/agents.yaml"), text)
        message = str(caught.value)
        assert message.startswith(f"conf/agents.yaml: agents[0].{key}: "), message
        assert "control character U+" in message


@pytest.mark.parametrize(
    "escaped",
    [
        "\\u05DE\\u05E8\\u05D9\\u05DD\\u200F (Miriam)",  # RLM: the parenthesis after the Hebrew
        "Ada \\u200E\\u05D0\\u05D3\\u05D4",  # LRM
        "\\u0645\\u062D\\u0645\\u062F\\u061C 2",  # ARABIC LETTER MARK
        "\\u0645\\u062D\\u0645\\u062F\\u200C\\u0639\\u0644\\u06CC",  # ZWNJ (Persian)
        "\\u0915\\u0943\\u0937\\u094D\\u0923\\u200D",  # ZWJ (Devanagari)
    ],
)
def test_names_with_implicit_direction_marks_and_joiners_load(escaped: str) -> None:
    """The implicit marks (LRM, RLM, ALM) reorder nothing: they are strong, invisible
    letters that mixed right-to-left and Latin names (a Hebrew name with a Latin part in
    parentheses) need to show right, as scripts need the joiners. Only the embeddings,
    overrides and isolates (U+202A-U+202E, U+2066-U+2069) are refused."""
    text = ONE.replace("    name: Ada\n", "") + f'    name: "{escaped}"\n    team: "{escaped}"\n'
    text += f"    password_hash: {HASH}\n"
    name = parse_agent_profiles(Path("a.yaml"), text)[0].name
    assert name == escaped.encode().decode("unicode_escape")
    assert parse_agent_directory(Path("a.yaml"), text).get("a1") is not None
