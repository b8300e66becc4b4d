"""`ivr-engine demo`: a new caller and a returning billing caller, side by side.

Runs on a throw-away SQLite timeline in a temporary directory, whatever ``database_url``
says: the demo's made-up customers never reach a real timeline, and every run starts from
the same state (a second run's "new" caller is new again). It seeds a returning customer
whose history is mostly billing and who once entered an account number in chat, starts the
engine in-process on free ports with the configured menus and prompts (nothing else: no
agents, webhooks or AMI), and places two simulated calls over a real FastAGI socket. Prints
what each caller hears.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from ivr_engine.app import Engine, utc_now
from ivr_engine.domain.models import KnownField
from ivr_engine.ports import Identity, NewTimelineEvent, TimelineStore
from ivr_engine.settings import Settings
from ivr_engine.simulate import SimulatedCall, simulate_call

RETURNING_PHONE = "+15551230002"
NEW_PHONE = "+15551239999"
_HISTORY = [
    ("billing", 2),
    ("billing", 9),
    ("tech_support", 15),
    ("billing", 20),
    ("billing", 33),
    ("billing", 41),
]


async def seed_returning_customer(store: TimelineStore) -> str:
    found = await store.find_customers(Identity("phone", RETURNING_PHONE))
    if found:
        return found[0].customer_id
    now = utc_now()
    customer = await store.create_customer(
        "Ada Lovelace",
        [Identity("phone", RETURNING_PHONE), Identity("email", "ada@example.com")],
        [KnownField("account_number", "40012345", "chat", now - timedelta(days=9))],
    )
    events = [
        NewTimelineEvent(
            event_id=f"demo:{customer.customer_id}:{i}",
            customer_id=customer.customer_id,
            occurred_at=now - timedelta(days=days_ago),
            channel="voice" if i % 2 else "chat",
            event_type="call.ivr" if i % 2 else "chat.conversation",
            intent=intent,
        )
        for i, (intent, days_ago) in enumerate(_HISTORY)
    ]
    await store.append_events(events)
    return customer.customer_id


def _describe(title: str, call: SimulatedCall) -> str:
    lines = [f"== {title} ({call.caller_id})"]
    for n, prompts in enumerate(call.heard, 1):
        pressed = call.keys[n - 1] if n <= len(call.keys) else ""
        lines.append(f"  heard #{n}: {' '.join(prompts)}")
        lines.append(f"  pressed:  {pressed or '(nothing)'}")
    lines.append(f"  -> dialplan variables: {call.variables}")
    return "\n".join(lines)


def demo_settings(settings: Settings, workdir: Path) -> Settings:
    """The configured menus, prompts and call handling on a timeline and spool in
    ``workdir``; every other setting (agents, webhooks, AMI, ports) at its default, and an
    API token nobody knows (the demo never calls its HTTP API: nobody else should)."""
    keep = (
        "menus_dir",
        "sounds_dir",
        "check_prompts",
        "default_region",
        "caller_id_country_code_without_plus",
        "log_level",
    )
    return Settings.model_validate(
        {
            **{key: getattr(settings, key) for key in keep},
            "decision_deadline_ms": settings.decision_deadline_ms,
            "database_url": f"sqlite:///{workdir / 'demo-timeline.db'}",
            "spool_dir": workdir / "spool",
            "agi_port": 0,
            "http_port": 0,
            "api_tokens": [secrets.token_hex(32)],
        }
    )


async def run_demo(settings: Settings) -> str:
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="ivr-engine-demo-"))
    try:
        return await _run_demo(demo_settings(settings, workdir))
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def _run_demo(settings: Settings) -> str:
    engine = Engine(settings)
    await engine.start()
    try:
        assert engine.timeline is not None and engine.agi is not None
        await seed_returning_customer(engine.timeline.store)
        port = engine.agi.port
        new = await simulate_call(SimulatedCall(NEW_PHONE, ["6", "12345678"]), "127.0.0.1", port)
        back = await simulate_call(SimulatedCall(RETURNING_PHONE, ["2", "1"]), "127.0.0.1", port)
    finally:
        await engine.stop()
    return "\n".join(
        [
            "(a throw-away timeline: nothing is written to the configured database)",
            _describe("new caller: default order, billing is on 6, asked for the account", new),
            _describe(
                "returning caller: shortcut offered, then billing first on key 1, "
                "account number prefilled (not asked)",
                back,
            ),
        ]
    )
