"""Agents: CSV import into agents.yaml (validated like start-up) and GET /v1/agents."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

from ivr_engine.agents.model import AgentState
from ivr_engine.contact_center.agent_bodies import MIN_PASSWORD
from ivr_engine.contact_center.agents_csv import agents_yaml_from_csv, import_agents_csv
from ivr_engine.contact_center.agents_file import load_agent_profiles
from ivr_engine.desktop import load_agent_directory
from ivr_engine.domain.errors import ConfigError
from ivr_engine.routing import load_routing_config
from tests.component.test_agent_routing_flow import center, engine  # noqa: F401  (fixture)
from tests.component.test_ivr_flow import REPO

ROUTING = load_routing_config(REPO / "config/routing.yaml")
CSV = (
    "agent_id,name,sip_endpoint,skills,languages,team,max_concurrent,password\n"
    "b1,Bea,PJSIP/agent-1,billing:5;general:2,en,billing,1,s3cret-pass\n"
    "g2,Gus,PJSIP/agent-2,billing:4;support:3,en;es,general,2,other-pass\n"
)


def test_csv_import_writes_a_file_the_engine_loads(tmp_path: Path) -> None:
    source = tmp_path / "agents.csv"
    source.write_text(CSV, encoding="utf-8")
    out = tmp_path / "config" / "agents.yaml"
    assert import_agents_csv(source, out, ROUTING) == 2
    text = out.read_text()
    assert "s3cret-pass" not in text and "scrypt$" in text  # hashed, never stored in clear
    profiles = load_agent_profiles(out, ROUTING)
    assert [(a.agent_id, dict(a.skills), a.max_concurrent) for a in profiles] == [
        ("b1", {"billing": 5, "general": 2}, 1),
        ("g2", {"billing": 4, "support": 3}, 2),
    ]
    directory = load_agent_directory(out)
    assert directory.check_password("b1", "s3cret-pass") is not None
    assert directory.check_password("b1", "wrong") is None


PW = "long-enough"  # the API's password rule: at least 8 characters


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("name,sip_endpoint\nX,PJSIP/x\n", "header must name agent_id"),
        ("agent_id,name,sip_endpoint,colour\nx,X,PJSIP/x,red\n", "unknown column"),
        (f"agent_id,name,sip_endpoint,password\nx,,PJSIP/x,{PW}\n", "line 2: missing name"),
        (f"agent_id,name,sip_endpoint,skills,password\nx,X,PJSIP/x,billing,{PW}\n", "skill:level"),
        (
            f"agent_id,name,sip_endpoint,skills,password\nx,X,PJSIP/x,billing:9,{PW}\n",
            r"^agents\.csv line 2: skills\.billing: Input should be less than or equal to 5$",
        ),
        (
            f"agent_id,name,sip_endpoint,skills,password\nx,X,PJSIP/x,juggling:3,{PW}\n",
            r"^agents\.csv line 2: skills: \['juggling'\] not required",
        ),
        ("agent_id,name,sip_endpoint\nx,X,PJSIP/x\n", "password or password_hash"),
        (
            "agent_id,name,sip_endpoint,password\nok,O,PJSIP/o,long-enough\nx,X,PJSIP/x,abc\n",
            r"^agents\.csv line 3: password: String should have at least 8 characters$",
        ),
        (
            "agent_id,name,sip_endpoint,password_hash\nx,X,PJSIP/x,plain-text-pass\n",
            r"^agents\.csv line 2: password_hash: expected scrypt",
        ),
        (f"agent_id,name,sip_endpoint,password\nx y,X,PJSIP/x,{PW}\n", "line 2: agent_id: "),
        ("agent_id,name,sip_endpoint,password\n", "no agent rows"),
        (
            f"agent_id,name,sip_endpoint,password\nx,X,PJSIP/x,{PW}\nx,Y,PJSIP/y,{PW}\n",
            r"^agents\.csv line 3: agent_id: 'x' is listed twice \(first on line 2\)$",
        ),
    ],
)
def test_bad_csv_is_refused_with_line_and_key(csv_text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        agents_yaml_from_csv(csv_text, "agents.csv", ROUTING)


def test_csv_password_rule_is_the_api_rule() -> None:
    """One rule: a password one character shorter than the API's minimum is refused."""
    short = "x" * (MIN_PASSWORD - 1)
    with pytest.raises(ConfigError, match="password: String should have at least"):
        agents_yaml_from_csv(f"agent_id,name,sip_endpoint,password\nx,X,PJSIP/x,{short}\n")
    assert "agent_id: x" in agents_yaml_from_csv(
        f"agent_id,name,sip_endpoint,password\nx,X,PJSIP/x,{short}y\n"
    )


def test_cli_import_reports_and_refuses(tmp_path: Path) -> None:
    source = tmp_path / "agents.csv"
    source.write_text(CSV, encoding="utf-8")
    out = tmp_path / "agents.yaml"

    async def run(csv_path: Path) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "ivr_engine", "agents", "import", str(csv_path)),
            *("--out", str(out), "--force"),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await proc.communicate()
        return proc.returncode or 0, output.decode()

    code, output = asyncio.run(run(source))
    assert code == 0 and "wrote 2 agent(s)" in output
    source.write_text("agent_id,name\nx,X\n", encoding="utf-8")
    code, output = asyncio.run(run(source))
    assert code == 2 and "header must name" in output
    source.write_text(CSV.replace("billing:5;", "billing:7;"), encoding="utf-8")
    code, output = asyncio.run(run(source))
    assert code == 2 and f"{source} line 2: skills.billing: " in output
    assert ".yaml" not in output  # no made-up file name


async def test_get_agents_shows_profiles_and_live_state(engine) -> None:  # noqa: F811
    await center(engine).agents.set_state("a1", AgentState.AVAILABLE)
    url = f"http://127.0.0.1:{engine.http_port}/v1/agents"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        body = await response.json()
    by_id = {a["agent_id"]: a for a in body["agents"]}
    assert body["agent_state_available"] is True
    assert by_id["a1"]["state"] == "available" and by_id["a2"]["state"] == "logged_out"
    assert by_id["a1"]["skills"]["billing"] == 5
    assert "password_hash" not in by_id["a1"]
