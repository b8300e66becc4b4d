"""``python -m crm_bridge.calls``: run the call-event bridge on its own.

    python -m crm_bridge.calls --ami-url ami://ivrtest:ivrtest@127.0.0.1:5038 \\
        --database-url sqlite:///data/ivr-engine.db --bus-url redis://127.0.0.1:6379/0 \\
        --outbox data/spool/call-outbox.db

FreeSWITCH instead of Asterisk: ``--esl-url esl://:ClueCon@127.0.0.1:8021`` (its inbound
Event Socket) in place of ``--ami-url``; ``--esl-source`` names the switch in event ids,
``--esl-inbound-context`` (repeatable, default ``public``) the caller legs' contexts.

SIGTERM or SIGINT stops it gracefully (outbox drained within the grace period, whatever
is left stays on disk for the next start). ``--ready-file`` is written once it is started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from crm_bridge.calls.service import Bridge, run_bridge
from crm_bridge.calls.settings import BridgeSettings
from ivr_engine.domain.errors import IvrEngineError
from ivr_engine.settings import LOG_LEVELS

_OPTIONS = {
    "--ami-url": "ami_url",
    "--esl-url": "esl_url",
    "--esl-source": "esl_source",
    "--database-url": "database_url",
    "--bus-url": "bus_url",
    "--outbox": "outbox_path",
    "--outbox-sync": "outbox_sync",
    "--source": "source",
    "--consumer-name": "consumer_name",
    "--stream": "stream",
    "--group": "group",
    "--default-region": "default_region",
    "--caller-id-country-code-without-plus": "caller_id_country_code_without_plus",
    "--webhooks-file": "webhooks_file",
    "--webhooks-store": "webhooks_store",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m crm_bridge.calls",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, dest in _OPTIONS.items():
        parser.add_argument(flag, dest=dest, help=_help(dest))
    parser.add_argument(
        "--roles",
        default="reader,consumer",
        help="reader, consumer, or both as reader,consumer (the default; the in-process bus "
        "needs both in one process)",
    )
    parser.add_argument(
        "--inbound-context",
        dest="inbound_contexts",
        action="append",
        help=_help("inbound_contexts", "Asterisk contexts of the callers' legs (repeatable)"),
    )
    parser.add_argument(
        "--esl-inbound-context",
        dest="esl_inbound_contexts",
        action="append",
        help=_help("esl_inbound_contexts", "FreeSWITCH contexts of the callers' legs"),
    )
    for flag in (
        "--publish-window-ms",
        "--publish-batch",
        "--consume-batch",
        "--consume-linger-ms",
    ):
        parser.add_argument(flag, type=int, help=_help(flag[2:].replace("-", "_")))
    parser.add_argument("--ready-file", type=Path, help="written ('ready') once started")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR, any case (default INFO)",
    )
    return parser


def _help(name: str, what: str | None = None) -> str:
    """A flag's help: what the setting is (its description) and its default."""
    field = BridgeSettings.model_fields[name]
    text = what or field.description or name.replace("_", " ")
    if field.default_factory is not None:
        return text
    default = field.default
    if isinstance(default, tuple):
        default = ",".join(default) if default else None
    return text if default is None else f"{text} (default {default})"


def _settings(args: argparse.Namespace) -> BridgeSettings:
    values: dict[str, Any] = {
        dest: getattr(args, dest) for dest in _OPTIONS.values() if getattr(args, dest) is not None
    }
    values["roles"] = frozenset(r.strip() for r in args.roles.split(",") if r.strip())
    for key in ("inbound_contexts", "esl_inbound_contexts"):
        if getattr(args, key):
            values[key] = tuple(getattr(args, key))
    for key in ("publish_window_ms", "publish_batch", "consume_batch", "consume_linger_ms"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    return BridgeSettings.build(**values)


async def _main(settings: BridgeSettings, ready_file: Path | None) -> None:
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, main.cancel)

    def ready(_bridge: Bridge) -> None:
        if ready_file is not None:
            ready_file.write_text("ready\n")

    with contextlib.suppress(asyncio.CancelledError):
        await run_bridge(settings, ready=ready, tune_gc=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # as `ivr-engine bridge`
    try:
        asyncio.run(_main(_settings(args), args.ready_file))
    except IvrEngineError as exc:
        print(f"call bridge: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
