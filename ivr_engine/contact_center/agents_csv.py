"""Import agents from CSV (an HR or PBX export) into the ``agents.yaml`` the engine loads.

Columns (header row required, order free): ``agent_id``, ``name``, ``sip_endpoint``,
``skills`` (``billing:5;general:2``), ``languages`` (``en;es``), ``team``, ``max_concurrent``,
and either ``password`` (hashed here with scrypt; the plain text is never written) or
``password_hash``. The result is validated exactly as at engine start-up (routing profiles
and desktop directory) before anything is written; the file is replaced atomically.
Errors name the CSV row and column.

``import_agents_csv_to_roster`` (``ivr-engine agents import FILE.csv --to-database``) puts
the same validated agents into the shared roster table instead: each row creates or
replaces that agent (agents not in the CSV are kept); running engines pick it up within
a second, no restart.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ivr_engine.contact_center.agent_record import AgentRecord, records_from_file
from ivr_engine.contact_center.agents_file import parse_agent_profiles
from ivr_engine.contact_center.roster_store import SqlRosterStore
from ivr_engine.desktop import hash_password, parse_agent_directory
from ivr_engine.domain.errors import ConfigError
from ivr_engine.routing import RoutingConfig

REQUIRED = ("agent_id", "name", "sip_endpoint")
KNOWN = {*REQUIRED, "skills", "languages", "team", "max_concurrent", "password", "password_hash"}


def _skills(text: str, where: str) -> dict[str, int]:
    skills: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, level = item.partition(":")
        if not sep or not name.strip() or not level.strip().isdigit():
            raise ConfigError(f"{where}: skills: {item!r} is not skill:level (e.g. billing:5)")
        skills[name.strip()] = int(level)
    return skills


def _row_to_agent(row: dict[str, str], where: str) -> dict[str, Any]:
    missing = [c for c in REQUIRED if not (row.get(c) or "").strip()]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    agent: dict[str, Any] = {c: row[c].strip() for c in REQUIRED}
    agent["skills"] = _skills(row.get("skills") or "", where)
    agent["languages"] = [x.strip() for x in (row.get("languages") or "").split(";") if x.strip()]
    if (row.get("team") or "").strip():
        agent["team"] = row["team"].strip()
    if (row.get("max_concurrent") or "").strip():
        value = row["max_concurrent"].strip()
        if not value.isdigit():
            raise ConfigError(f"{where}: max_concurrent: {value!r} is not a whole number")
        agent["max_concurrent"] = int(value)
    password, stored = (row.get("password") or ""), (row.get("password_hash") or "").strip()
    if password and stored:
        raise ConfigError(f"{where}: give password or password_hash, not both")
    if password:
        agent["password_hash"] = hash_password(password).encode()
    elif stored:
        agent["password_hash"] = stored
    else:
        raise ConfigError(f"{where}: password or password_hash is required (desktop login)")
    return agent


def agents_yaml_from_csv(
    text: str, source: str = "agents.csv", routing: RoutingConfig | None = None
) -> str:
    """CSV text → validated ``agents.yaml`` text."""
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or ())
    if not set(REQUIRED) <= header:
        raise ConfigError(
            f"{source}: header must name {', '.join(REQUIRED)} (got {sorted(header)})"
        )
    unknown = sorted(header - KNOWN)
    if unknown:
        raise ConfigError(f"{source}: unknown column(s) {unknown}; known: {sorted(KNOWN)}")
    agents = [_row_to_agent(row, f"{source}: row {n}") for n, row in enumerate(reader, start=2)]
    if not agents:
        raise ConfigError(f"{source}: no agent rows")
    out = yaml.safe_dump({"agents": agents}, sort_keys=False, allow_unicode=True)
    target = Path(source).with_suffix(".yaml")
    parse_agent_profiles(target, out, routing)  # the engine's own checks, before writing
    parse_agent_directory(target, out)
    return out


def import_agents_csv(csv_path: Path, out: Path, routing: RoutingConfig | None = None) -> int:
    """Write ``out`` from ``csv_path`` (atomically); returns the number of agents."""
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{csv_path}: cannot read: {exc.strerror}") from None
    rendered = agents_yaml_from_csv(text, str(csv_path), routing)
    count = len(yaml.safe_load(rendered)["agents"])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(rendered)
    os.replace(tmp, out)
    return count


def _roster_records(csv_path: Path, routing: RoutingConfig | None) -> list[AgentRecord]:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{csv_path}: cannot read: {exc.strerror}") from None
    rendered = agents_yaml_from_csv(text, str(csv_path), routing)
    target = csv_path.with_suffix(".yaml")
    profiles = parse_agent_profiles(target, rendered, routing)
    return records_from_file(profiles, parse_agent_directory(target, rendered))


async def import_agents_csv_to_roster(
    csv_path: Path, database_url: str, routing: RoutingConfig | None = None
) -> int:
    """Upsert the CSV's agents into the roster table (one transaction); returns the count."""
    records = await asyncio.to_thread(_roster_records, csv_path, routing)  # scrypt, file I/O
    store = SqlRosterStore(database_url)
    try:
        await store.check_schema()
        return await store.upsert(records)
    finally:
        await store.aclose()
