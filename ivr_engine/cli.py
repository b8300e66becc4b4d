"""The ``ivr-engine`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr_engine.domain.errors import ConfigError, IvrEngineError
from ivr_engine.settings import (
    CONFIG_ENV,
    LOG_LEVELS,
    Settings,
    config_file_from,
)
from ivr_engine.token_reload import SettingsSource

if TYPE_CHECKING:
    from ivr_engine.timeline.migrate import Migrated

DEFAULT_CONFIG = Path("config/engine.yaml")
DEFAULT_AGENTS = Path("config/agents.yaml")


def _overrides(name: str, what: str) -> str:
    """Help for an option over a setting: what it is, the setting, its built-in default."""
    default = Settings.model_fields[name].default
    return f"{what} (overrides {name}; default {'off' if default is None else default})"


def _common(*, top: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (``ivr-engine migrate
    --database-url URL`` and ``ivr-engine --database-url URL migrate`` alike). After it they
    default to "not given", so they never reset what was given before."""
    common = argparse.ArgumentParser(add_help=False)
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    common.add_argument(
        "--config",
        type=Path,
        help=f"settings file (default: ${CONFIG_ENV}, else config/engine.yaml if present)",
        **unset,
    )
    common.add_argument(
        "--database-url",
        dest="database_url",
        metavar="URL",
        help=_overrides("database_url", "the timeline: sqlite:///FILE or postgresql://..."),
        **unset,
    )
    common.add_argument(
        "--log-level",
        dest="log_level",
        type=str.upper,  # any case, as in the settings file and the environment
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=_overrides("log_level", f"{', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}, any case"),
        **unset,
    )
    return common


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivr-engine",
        description="A personalised IVR engine for Asterisk and FreeSWITCH.",
        parents=[_common(top=True)],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = _common(top=False)

    def command(name: str, what: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=what, description=what)

    run = command("run", "serve FastAGI and the HTTP API")
    for name, what in (
        ("agi_port", "FastAGI port, 0: any free one"),
        ("http_port", "HTTP API port, 0: any free one"),
        ("esl_port", "FreeSWITCH outbound socket port"),
        ("workers", "engine processes sharing the ports"),
    ):
        flag = "--" + name.replace("_", "-")
        metavar = "N" if name == "workers" else "PORT"
        run.add_argument(flag, dest=name, type=int, metavar=metavar, help=_overrides(name, what))
    run.add_argument("--ready-file", type=Path, help="write 'AGI_PORT HTTP_PORT' when ready")
    command("migrate", "create or upgrade the timeline schema")
    check = command(
        "check-config",
        "validate everything run would, short of connecting (settings, menus, prompts, "
        "agents, routing, webhooks, URLs), then exit",
    )
    check.add_argument(
        "--dialplan",
        type=Path,
        action="append",
        metavar="FILE",
        help="also check that the static fallback menu generated in FILE (or a file it "
        "includes: Asterisk #include, FreeSWITCH include pre-process) still matches its "
        "menu YAML; repeatable",
    )
    dialplan = command("dialplan", "Asterisk and FreeSWITCH dialplan tools")
    dialplan.add_argument("action", choices=["fallback"])
    dialplan.add_argument(
        "--pbx",
        choices=["asterisk", "freeswitch"],
        default="asterisk",
        help="asterisk: an [ivr-fail] context to #include; freeswitch: ivr-fail extensions "
        "for an include inside the ivr-engine context (default asterisk)",
    )
    dialplan.add_argument(
        "--menu", default="main", help="the menu (its menu: name) to generate for (default main)"
    )
    dialplan.add_argument(
        "--output", type=Path, metavar="FILE", help="write FILE (default: standard output)"
    )
    command("demo", "a new and a returning caller through the engine")
    _agents_command(command("agents", "agent directory tools"))
    _identities_command(command("identities", "stored customer identity tools"))
    bridge = command(
        "bridge",
        "AMI or ESL call events -> durable outbox -> bus -> timeline (ami_url or --esl-url)",
    )
    bridge.add_argument(
        "--bus-url", metavar="URL", help="redis://HOST:6379/0 (default: in-process)"
    )
    bridge.add_argument(
        "--esl-url", metavar="URL", help=_overrides("esl_url", "esl://:PASSWORD@HOST:8021")
    )
    bridge.add_argument(
        "--roles",
        default="reader,consumer",
        help="reader, consumer, or both as reader,consumer (the default; the in-process bus "
        "needs both in one process)",
    )
    prompts = command("prompts", "prompt set tools")
    prompts.add_argument("action", choices=["build"])
    prompts.add_argument(
        "--texts",
        type=Path,
        default=Path("prompts/prompts.yaml"),
        help="the prompt texts (default prompts/prompts.yaml)",
    )
    prompts.add_argument(
        "--out",
        type=Path,
        default=Path("prompts"),
        help="writes OUT/<language>/ivr-engine/<id>.wav (default prompts)",
    )
    prompts.add_argument("--only", nargs="+", metavar="ID", help="build just these prompt ids")
    return parser


def _agents_command(agents: argparse.ArgumentParser) -> None:
    agents.add_argument("action", choices=["import"])
    agents.add_argument("csv", type=Path, help="CSV: agent_id,name,sip_endpoint,skills,...")
    agents.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_AGENTS,
        help=f"the agents YAML to write (default {DEFAULT_AGENTS}); an existing file is "
        "replaced only with --force",
    )
    agents.add_argument("--force", action="store_true", help="replace an existing --out file")
    agents.add_argument(
        "--to-database", action="store_true", help="upsert into the roster table instead"
    )


def _identities_command(identities: argparse.ArgumentParser) -> None:
    identities.add_argument(
        "action",
        choices=["renormalize"],
        help="renormalize: re-read phone identities stored under the earlier "
        "international-prefix rule (before 2fa2187); lists what would change",
    )
    identities.add_argument(
        "--apply", action="store_true", help="make the changes listed (default: dry run)"
    )
    identities.add_argument(
        "--region",
        type=str.upper,
        metavar="REGION",
        help="the default_region the identities were stored under (default: default_region)",
    )
    identities.add_argument(
        "--list-ambiguous",
        action="store_true",
        help="also list the values left as they are because they are valid numbers as stored",
    )
    identities.add_argument(
        "--batch-size", type=int, default=500, metavar="N", help="rows per statement (500)"
    )


def _settings(args: argparse.Namespace) -> Settings:
    return _source(args).load()


def _source(args: argparse.Namespace) -> SettingsSource:
    """Where the settings come from; ``run`` reads them again from it on SIGHUP (the API's
    tokens: ``token_reload.py``)."""
    default = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None
    config = args.config or config_file_from(os.environ, default)
    overrides: dict[str, Any] = {
        key: getattr(args, key, None)
        for key in ("database_url", "log_level", "agi_port", "http_port", "esl_port", "workers")
    }
    return SettingsSource(config, dict(os.environ), overrides)


async def _dispatch(
    args: argparse.Namespace, settings: Settings, source: SettingsSource | None = None
) -> int:
    """Run the command; the process's exit code."""
    if args.command == "run" and settings.workers > 1:
        from ivr_engine.workers.supervisor import run_supervisor

        return await run_supervisor(settings, ready_file=args.ready_file, source=source)
    if args.command == "run":
        from ivr_engine.engine_process import run_engine

        await run_engine(settings, ready_file=args.ready_file, source=source)
    elif args.command == "migrate":
        from ivr_engine.timeline.migrate import upgrade

        print(describe_migration(await upgrade(settings.database_url), settings.database_url))
    elif args.command == "check-config":
        from ivr_engine.config_check import check_offline

        dialplans = getattr(args, "dialplan", None) or []
        print("\n".join(await asyncio.to_thread(check_offline, settings, dialplans)))
    elif args.command == "dialplan":
        from ivr_engine.fallback_files import write_fallback

        print(await asyncio.to_thread(write_fallback, settings, args.menu, args.output, args.pbx))
    elif args.command == "bridge":
        from crm_bridge.calls import BridgeSettings, run_bridge

        roles = frozenset(r.strip() for r in args.roles.split(",") if r.strip())
        switch = {} if args.esl_url is None else {"esl_url": args.esl_url}
        bridge = BridgeSettings.from_engine(settings, bus_url=args.bus_url, roles=roles, **switch)
        await run_bridge(bridge, tune_gc=True)
    elif args.command == "agents":
        from ivr_engine.contact_center.agents_csv import import_agents_csv
        from ivr_engine.routing import load_routing_config

        routing = load_routing_config(settings.routing_file)
        if args.to_database:
            from ivr_engine.contact_center.agents_csv import import_agents_csv_to_roster

            count = await import_agents_csv_to_roster(args.csv, settings.database_url, routing)
            print(f"upserted {count} agent(s) into the agent roster")
        else:
            if args.out.exists() and not args.force:
                raise ConfigError(
                    f"agents import: {args.out} exists: give --force to replace it, or "
                    "--out another file"
                )
            count = import_agents_csv(args.csv, args.out, routing)
            print(f"wrote {count} agent(s) to {args.out}")
    elif args.command == "identities":
        return await _renormalize(args, settings)
    elif args.command == "demo":
        from ivr_engine.demo import run_demo

        print(await run_demo(settings))
    elif args.command == "prompts":
        from ivr_engine.prompt_builder import build_prompts, report_build

        only = set(args.only) if args.only else None
        written = await build_prompts(args.texts, args.out, only)
        return await asyncio.to_thread(report_build, written, args.out)
    return 0


async def _renormalize(args: argparse.Namespace, settings: Settings) -> int:
    import phonenumbers

    from ivr_engine.identity_repair import describe
    from ivr_engine.timeline.renormalize import renormalize_phones

    region = args.region or settings.default_region
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"identities renormalize: --region {region}: not a phonenumbers region")
    if args.batch_size < 1:
        raise ConfigError(f"identities renormalize: --batch-size {args.batch_size}: give 1 or more")
    done = await renormalize_phones(
        settings.database_url, region, apply=args.apply, batch_size=args.batch_size
    )
    lines = describe(
        done.plan, done.ambiguous, applied=done.applied, list_ambiguous=args.list_ambiguous
    )
    lines[-1:-1] = [
        f"skipped (changed since the scan): identity {c.row.row_id}: {c.row.value}"
        for c in done.skipped
    ]
    print(f"phone identities re-read in region {region}:")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings: Settings | None = None
    try:
        source = _source(args)
        settings = source.load()
        logging.basicConfig(
            level=_log_level(args, settings),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        logging.getLogger("alembic").setLevel(logging.WARNING)
        code = asyncio.run(_dispatch(args, settings, source))
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (IvrEngineError, OSError) as exc:
        # A database, Redis or port that is not there: one line, not a traceback.
        print(f"error: {describe_failure(exc, settings)}", file=sys.stderr)
        return 1
    return code


def _log_level(args: argparse.Namespace, settings: Settings) -> int:
    """``log_level``; the demo's throw-away engine logs only warnings and errors (its
    "engine ready" is noise there) unless ``--log-level`` is given on the command line."""
    level = logging.getLevelNamesMapping()[settings.log_level]
    if args.command == "demo" and getattr(args, "log_level", None) is None:
        return max(level, logging.WARNING)
    return level


def describe_migration(migrated: Migrated, database_url: str) -> str:
    """What ``migrate`` did: created, upgraded or left the schema (and where)."""
    from ivr_engine.timeline.urls import redact

    where = redact(database_url)
    if migrated.before == migrated.after:
        return f"timeline schema already at {migrated.after} ({where})"
    before = migrated.before or "(none)"
    return f"timeline schema migrated from {before} to {migrated.after} ({where})"


def describe_failure(exc: BaseException, settings: Settings | None) -> str:
    """What went wrong, in one line, with the setting that points at it where known."""
    from ivr_engine.agents.errors import AgentStateError
    from ivr_engine.timeline.urls import redact

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, AgentStateError) and settings is not None and settings.agent_state_url:
        return f"agent_state_url {redact(settings.agent_state_url)}: {text}"
    return text


if __name__ == "__main__":
    sys.exit(main())
