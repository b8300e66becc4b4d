"""Import agents from CSV (an HR or PBX export) into the ``agents.yaml`` the engine loads.

Columns (header row required, order free): ``agent_id``, ``name``, ``sip_endpoint``,
``skills`` (``billing:5;general:2``), ``languages`` (``en;es``), ``team``, ``max_concurrent``,
and either ``password`` (hashed here with scrypt; the plain text is never written) or
``password_hash``. Each row is checked by the rules of ``POST /v1/agents``
(``agent_bodies``: the same ranges, patterns and password rule, and every skill required
by some intent), and the result again as at engine start-up, before anything is written;
the file is replaced atomically. Errors name the CSV file, line and key
(``agents.csv line 2: skills.billing: ...``).

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
from pydantic import ValidationError

from ivr_engine.contact_center.agent_bodies import (
    AgentRuleError,
    NewAgentBody,
    record_from_fields,
)
from ivr_engine.contact_center.agent_record import AgentRecord
from ivr_engine.contact_center.agents_file import known_skills, parse_agent_profiles
from ivr_engine.contact_center.roster_store import SqlRosterStore
from ivr_engine.desktop import hash_password, parse_agent_directory
from ivr_engine.desktop.passwords import parse_password_hash
from ivr_engine.domain.errors import ConfigError
from ivr_engine.routing import RoutingConfig

REQUIRED = ("agent_id", "name", "sip_endpoint")
KNOWN = {*REQUIRED, "skills", "languages", "team", "max_concurrent", "password", "password_hash"}


def _whole_number(text: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is True but ``int("²")`` fails."""
    return text.isascii() and text.isdigit()


def _skills(text: str, where: str) -> dict[str, int]:
    skills: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, level = item.partition(":")
        if not sep or not name.strip() or not _whole_number(level.strip()):
            raise ConfigError(f"{where}: skills: {item!r} is not skill:level (e.g. billing:5)")
        skills[name.strip()] = int(level)
    return skills


def _row_fields(row: dict[str, str], where: str) -> dict[str, Any]:
    """The CSV cells as the fields of a ``POST /v1/agents`` body (not yet validated)."""
    missing = [c for c in REQUIRED if not (row.get(c) or "").strip()]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    fields: dict[str, Any] = {c: row[c].strip() for c in REQUIRED}
    fields["skills"] = _skills(row.get("skills") or "", where)
    fields["languages"] = [x.strip() for x in (row.get("languages") or "").split(";") if x.strip()]
    if (row.get("team") or "").strip():
        fields["team"] = row["team"].strip()
    if (row.get("max_concurrent") or "").strip():
        value = row["max_concurrent"].strip()
        if not _whole_number(value):
            raise ConfigError(f"{where}: max_concurrent: {value!r} is not a whole number")
        fields["max_concurrent"] = int(value)
    return fields


def _row_to_record(row: dict[str, str], where: str, known: set[str]) -> AgentRecord:
    """One CSV row → a roster record, checked by the rules of ``POST /v1/agents`` (the
    password rule included); errors read ``agents.csv line 2: skills.billing: ...``."""
    fields = _row_fields(row, where)
    password, stored = (row.get("password") or ""), (row.get("password_hash") or "").strip()
    if password and stored:
        raise ConfigError(f"{where}: give password or password_hash, not both")
    if not password and not stored:
        raise ConfigError(f"{where}: password or password_hash is required (desktop login)")
    try:
        body = NewAgentBody.model_validate(
            {**fields, **({"password": password} if password else {})}
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        key = ".".join(str(part) for part in first["loc"]) or "(row)"
        raise ConfigError(f"{where}: {key}: {first['msg']}") from None
    if stored:
        try:
            parse_password_hash(stored)
        except ValueError as exc:
            raise ConfigError(f"{where}: password_hash: {exc}") from None
    hashed = hash_password(password).encode() if password else stored
    fields = body.model_dump(exclude={"token_sha256"})  # "password" in it: ``hashed`` applies
    try:
        return record_from_fields(body.agent_id, fields, hashed, None, known)
    except AgentRuleError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def records_from_csv(
    text: str, source: str = "agents.csv", routing: RoutingConfig | None = None
) -> list[AgentRecord]:
    """CSV text → roster records, each row checked as ``POST /v1/agents`` checks a body."""
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or ())
    if not set(REQUIRED) <= header:
        raise ConfigError(
            f"{source}: header must name {', '.join(REQUIRED)} (got {sorted(header)})"
        )
    unknown = sorted(header - KNOWN)
    if unknown:
        raise ConfigError(f"{source}: unknown column(s) {unknown}; known: {sorted(KNOWN)}")
    known = known_skills(routing) if routing is not None else set()
    records: list[AgentRecord] = []
    lines: dict[str, int] = {}
    for row in reader:
        line = reader.line_num  # the line the row ends on (a quoted cell may span lines)
        record = _row_to_record(row, f"{source} line {line}", known)
        if record.agent_id in lines:
            raise ConfigError(
                f"{source} line {line}: agent_id: {record.agent_id!r} is listed twice "
                f"(first on line {lines[record.agent_id]})"
            )
        lines[record.agent_id] = line
        records.append(record)
    if not records:
        raise ConfigError(f"{source}: no agent rows")
    return records


def agents_yaml_from_csv(
    text: str, source: str = "agents.csv", routing: RoutingConfig | None = None
) -> str:
    """CSV text → validated ``agents.yaml`` text."""
    agents = [_yaml_agent(record) for record in records_from_csv(text, source, routing)]
    out = yaml.safe_dump({"agents": agents}, sort_keys=False, allow_unicode=True)
    parse_agent_profiles(Path(source), out, routing)  # the engine's own start-up checks
    parse_agent_directory(Path(source), out)
    return out


def _yaml_agent(record: AgentRecord) -> dict[str, Any]:
    return {"agent_id": record.agent_id, **record.profile(), "password_hash": record.password_hash}


def import_agents_csv(csv_path: Path, out: Path, routing: RoutingConfig | None = None) -> int:
    """Write ``out`` from ``csv_path`` (atomically); returns the number of agents."""
    rendered = agents_yaml_from_csv(_read_csv(csv_path), str(csv_path), routing)
    count = len(yaml.safe_load(rendered)["agents"])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(rendered)
    os.replace(tmp, out)
    return count


def _read_csv(csv_path: Path) -> str:
    try:
        return csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{csv_path}: cannot read: {exc.strerror}") from None


def _roster_records(csv_path: Path, routing: RoutingConfig | None) -> list[AgentRecord]:
    return records_from_csv(_read_csv(csv_path), str(csv_path), routing)


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
