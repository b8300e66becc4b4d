"""docker/compose.yaml and the Dockerfile stay consistent with the engine (no Docker engine
here to run them): data in named volumes, the engine's health from its real ``/healthz``
(no token, any Host), PostgreSQL's password from docker/.env (documented by .env.example,
git-ignored) instead of password-less ``trust`` authentication, and a stop grace longer than
the engine's own. Before, the stack kept its data in the containers (lost with them), had no
engine health check and let anyone who reached PostgreSQL in as ``ivr``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ivr_engine.api.app import meta
from ivr_engine.api.auth import ANY_HOST_PATHS, OPEN_PATHS
from ivr_engine.settings import Settings, check_database_url

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
VARIABLE = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def env_example() -> dict[str, str]:
    lines = (ROOT / "docker" / ".env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {name: value for name, value in pairs}


def test_every_service_keeps_its_data_in_a_named_volume() -> None:
    stack = compose()
    declared = set(stack["volumes"])
    where = {"engine": "/srv/ivr/data", "postgres": "/var/lib/postgresql/data", "redis": "/data"}
    for service, path in where.items():
        mounts = dict(m.split(":")[::-1] for m in stack["services"][service]["volumes"])
        assert mounts.get(path) in declared, service
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert "WORKDIR /srv/ivr" in dockerfile and "chown ivr data" in dockerfile


def test_the_postgres_password_comes_from_docker_env_not_trust() -> None:
    services = compose()["services"]
    postgres = services["postgres"]["environment"]
    assert "POSTGRES_HOST_AUTH_METHOD" not in postgres
    assert VARIABLE.fullmatch(postgres["POSTGRES_PASSWORD"])[1] == "POSTGRES_PASSWORD"  # type: ignore[index]
    url = services["engine"]["environment"]["IVR_ENGINE_DATABASE_URL"]
    assert "${POSTGRES_PASSWORD" in url
    check_database_url(VARIABLE.sub("0123abcd", url))  # the engine opens it
    text = COMPOSE.read_text(encoding="utf-8")
    example = env_example()
    assert {m[1] for m in VARIABLE.finditer(text)} <= set(example)
    assert all(value == "" for value in example.values())  # no secret in the repository
    assert "docker/.env" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_the_health_checks_probe_the_engines_healthz() -> None:
    assert any(getattr(route, "path", None) == "/healthz" for route in meta)
    assert "/healthz" in ANY_HOST_PATHS & OPEN_PATHS  # probed as 127.0.0.1:PORT, no token
    probe = f"http://127.0.0.1:{Settings().http_port}/healthz"
    engine = compose()["services"]["engine"]
    assert probe in " ".join(engine["healthcheck"]["test"])
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    healthcheck = dockerfile[dockerfile.index("\nHEALTHCHECK ") :]
    assert probe in healthcheck.split("\nCMD [")[0]


def test_compose_waits_longer_than_the_engines_stop_grace() -> None:
    period = compose()["services"]["engine"]["stop_grace_period"]
    assert period.endswith("s") and float(period[:-1]) > Settings().shutdown_grace_s + 10
