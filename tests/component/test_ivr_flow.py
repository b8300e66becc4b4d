"""The whole engine in-process: real FastAGI socket, real timeline (SQLite and PostgreSQL).

The Asterisk side is ``ivr_engine.simulate`` (answers ``EXEC Read`` / ``GET FULL VARIABLE``
as Asterisk 22 does, presses scripted keys). The real-Asterisk versions of these cases are
in tests/e2e/test_engine_calls.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ivr_engine.app import Engine
from ivr_engine.domain.models import KnownField
from ivr_engine.flows.recorder import REJECTED_FILE, SPOOL_FILE
from ivr_engine.ports import Customer, Identity, NewTimelineEvent, StoredEvent, TimelineStore
from ivr_engine.settings import Settings
from ivr_engine.simulate import SimulatedCall, simulate_call

REPO = Path(__file__).resolve().parents[2]
WELCOME = "ivr-engine/welcome"
ASK_ACCOUNT = ["ivr-engine/enter-account-number"]
ASK_POSTCODE = ["ivr-engine/enter-postcode"]
_accounts = itertools.count(uuid.uuid4().int % 50_000_000 + 10_000_000)


def new_account() -> str:
    """A fresh 8-digit account number: a saved one identifies its customer, and the
    PostgreSQL database is shared by the session's tests."""
    return str(next(_accounts))


def labels(prompts: list[str]) -> list[str]:
    return [p.removeprefix("ivr-engine/label-") for p in prompts if "/label-" in p]


def settings_for(url: str, tmp_path: Path, **extra: object) -> Settings:
    return Settings.model_validate(
        {
            "database_url": url,
            "agi_port": 0,
            "http_port": 0,
            "menus_dir": REPO / "config/menus",
            "sounds_dir": REPO / "prompts/en",
            "spool_dir": tmp_path / "spool",
            **extra,
        }
    )


@pytest.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    running = Engine(settings_for(database_url, tmp_path))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def store(engine: Engine) -> TimelineStore:
    assert engine.timeline is not None
    return engine.timeline.store


async def call(engine: Engine, caller: str, keys: list[str], **kw: object) -> SimulatedCall:
    assert engine.agi is not None
    return await simulate_call(SimulatedCall(caller, keys, **kw), "127.0.0.1", engine.agi.port)  # type: ignore[arg-type]


async def seed(
    target: TimelineStore, phone: str, intents: list[str], fields: dict[str, str] | None = None
) -> Customer:
    now = datetime.now(UTC)
    customer = await target.create_customer(
        "Ada",
        [Identity("phone", phone)],
        [KnownField(k, v, "chat", now - timedelta(days=1)) for k, v in (fields or {}).items()],
    )
    await target.append_events(
        [
            NewTimelineEvent(
                f"seed:{customer.customer_id}:{n}",
                customer.customer_id,
                now - timedelta(days=1 + n),
                "chat" if n % 2 else "voice",
                "contact",
                intent=intent,
            )
            for n, intent in enumerate(intents)
        ]
    )
    return customer


async def call_event(target: TimelineStore, phone: str, timeout_s: float = 10) -> StoredEvent:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for customer in await target.find_customers(Identity("phone", phone)):
            page = await target.timeline(customer.customer_id)
            found = [
                e
                for e in page.events
                if e.event_id.startswith("voice:") and e.event_id.endswith(":ivr")
            ]
            if found:
                return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no call event for {phone}")


async def call_events_of(
    target: TimelineStore, customer_id: str, count: int, timeout_s: float = 10
) -> list[StoredEvent]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page = await target.timeline(customer_id)
        found = [
            e
            for e in page.events
            if e.event_id.startswith("voice:") and e.event_id.endswith(":ivr")
        ]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} call events for {customer_id}")


# ---------------------------------------------------------------------------- callers


async def test_new_caller_default_order_customer_created(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    heard = await call(engine, phone, ["1"])
    assert heard.heard[0][0] == WELCOME
    assert labels(heard.heard[0]) == [
        "new-service", "tech-support", "moving", "outage", "cancel", "billing", "operator"
    ]  # fmt: skip
    assert heard.variables["IVR_INTENT"] == "new_service"
    assert heard.variables["IVR_DECISION"] == "static"
    event = await call_event(store(engine), phone)
    assert event.intent == "new_service" and event.data["outcome"] == "routed"
    assert event.data["identified_by"] == "unknown"
    # request in -> first prompt out, measured by the engine: it holds the decision
    assert 0 < event.data["decision_ms"] <= event.data["first_prompt_ms"] < 5000


async def test_returning_billing_caller_shortcut_accepted(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone, account = new_phone(), new_account()
    ada = await seed(store(engine), phone, ["billing"] * 5, {"account_number": account})
    heard = await call(engine, phone, ["1"])
    assert heard.heard == [
        [
            WELCOME,
            "ivr-engine/shortcut-calling-about",
            "ivr-engine/shortcut-topic-billing",
            "ivr-engine/shortcut-again",
        ]
    ]  # one prompt list, no account question: it is known
    assert heard.variables["IVR_INTENT"] == "billing"
    assert heard.variables["IVR_CUSTOMER_ID"] == ada.customer_id
    assert heard.variables["IVR_DECISION"] == "personalised"
    event = await call_event(store(engine), phone)
    assert event.customer_id == ada.customer_id
    assert event.data["prefilled"] == ["account_number"]
    assert event.data["decision"]["reasons"]


async def test_returning_caller_declines_shortcut_and_gets_billing_on_1(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone, account = new_phone(), new_account()
    history = ["billing", "billing", "tech_support", "billing", "billing"]
    await seed(store(engine), phone, history, {"account_number": account})
    heard = await call(engine, phone, ["2", "1"])
    assert labels(heard.heard[1])[:2] == ["billing", "new-service"]  # 1 tech_support: stays
    assert heard.heard[1][:4] == [
        "ivr-engine/for", "ivr-engine/label-billing", "ivr-engine/press", "digits/1"
    ]  # fmt: skip
    assert WELCOME not in heard.heard[1]  # greeted once
    assert heard.variables["IVR_INTENT"] == "billing"


async def test_pinned_operator_key_during_the_shortcut_question_reaches_the_operator(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone, account = new_phone(), new_account()
    await seed(store(engine), phone, ["billing"] * 5, {"account_number": account})
    heard = await call(engine, phone, ["0"])
    assert len(heard.heard) == 1  # the shortcut question only: no menu read out after it
    assert heard.variables["IVR_INTENT"] == "operator"
    event = await call_event(store(engine), phone)
    assert [s["step"] for s in event.data["path"]][:2] == ["shortcut", "pinned_key"]


async def test_unknown_account_is_asked_saved_then_prefilled(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone, account = new_phone(), new_account()
    first = await call(engine, phone, ["2", account])
    assert first.heard[1] == ASK_ACCOUNT
    await call_event(store(engine), phone)
    (customer,) = await store(engine).find_customers(Identity("phone", phone))
    saved = customer.known_fields["account_number"]
    assert (saved.value, saved.source_channel) == (account, "voice")
    second = await call(engine, phone, ["2"])
    assert ASK_ACCOUNT not in second.heard
    assert second.variables["IVR_CUSTOMER_ID"] == customer.customer_id


async def test_account_entered_by_unknown_number_identifies_the_customer(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """Ada's account number is known only as a field (no identity added by hand)."""
    known, other, account = new_phone(), new_phone(), new_account()
    ada = await seed(store(engine), known, [], {"account_number": account})
    heard = await call(engine, other, ["6", account])
    assert heard.variables["IVR_CUSTOMER_ID"] == ada.customer_id
    event = await call_event(store(engine), known)
    assert event.data["identified_by"] == "account_number"
    owners = await store(engine).find_customers(Identity("account", account))
    assert [c.customer_id for c in owners] == [ada.customer_id]


async def test_account_keyed_in_on_an_earlier_call_identifies_the_caller_on_another_line(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """Saved by the call writer as a known field: keyed in again from another line, the
    call is the same customer's, and no second customer holds that account number."""
    home, mobile, account = new_phone(), new_phone(), new_account()
    await call(engine, home, ["6", account])
    await call_event(store(engine), home)
    (ada,) = await store(engine).find_customers(Identity("phone", home))
    heard = await call(engine, mobile, ["6", account])
    assert heard.heard[1:] == [ASK_ACCOUNT]
    assert heard.variables["IVR_CUSTOMER_ID"] == ada.customer_id
    owners = await store(engine).find_customers(Identity("account", account))
    assert [c.customer_id for c in owners] == [ada.customer_id]
    await call_events_of(store(engine), ada.customer_id, 2)  # both calls are Ada's
    assert await store(engine).find_customers(Identity("phone", mobile)) == []


async def test_account_put_as_a_field_identifies_the_caller_on_another_line(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """``PUT /v1/customers/{id}/fields/account_number`` (the store's ``put_known_field``)."""
    known, other, account = new_phone(), new_phone(), new_account()
    ada = await seed(store(engine), known, [])
    now = datetime.now(UTC)
    await store(engine).put_known_field(
        ada.customer_id, KnownField("account_number", account, "web", now)
    )
    heard = await call(engine, other, ["6", account])
    assert heard.variables["IVR_CUSTOMER_ID"] == ada.customer_id


async def test_account_entered_by_unknown_number_still_asks_the_customers_postcode(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """A keyed-in account number is no proof of who calls: the known postcode (sensitive)
    is asked, not prefilled; other known fields still are."""
    known, other, account = new_phone(), new_phone(), new_account()
    ada = await seed(store(engine), known, [], {"account_number": account, "postcode": "75001"})
    heard = await call(engine, other, ["3", account, "75001"])  # 3: moving (account, postcode)
    assert heard.heard[1:] == [ASK_ACCOUNT, ASK_POSTCODE]
    assert heard.variables["IVR_CUSTOMER_ID"] == ada.customer_id
    event = await call_event(store(engine), known)
    assert event.data["prefilled"] == []
    assert event.data["identified_by"] == "account_number"


async def test_known_postcode_is_asked_of_a_caller_identified_by_caller_id(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone, account = new_phone(), new_account()
    ada = await seed(store(engine), phone, [], {"account_number": account, "postcode": "75001"})
    heard = await call(engine, phone, ["3", "75001"])  # moving: account known, postcode asked
    assert heard.heard[1:] == [ASK_POSTCODE]
    assert heard.variables["IVR_CUSTOMER_ID"] == ada.customer_id
    event = await call_event(store(engine), phone)
    assert event.data["prefilled"] == ["account_number"]


async def test_account_of_another_customer_entered_on_a_known_line_is_stored_under_it(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """A household line owned by Ada; Bob keys in his account number: the call is Bob's, and
    Bob's account number is not saved onto Ada."""
    line, bobs, account = new_phone(), new_phone(), new_account()
    ada = await seed(store(engine), line, [])
    bob = await seed(store(engine), bobs, [], {"account_number": account})
    heard = await call(engine, line, ["6", account])  # 6: billing (account)
    assert heard.heard[1:] == [ASK_ACCOUNT]
    assert heard.variables["IVR_CUSTOMER_ID"] == bob.customer_id
    event = await call_event(store(engine), bobs)
    assert event.data["identified_by"] == "account_number"
    (step,) = [s for s in event.data["path"] if s["step"] == "identified"]
    assert step["caller_id_customer"] == ada.customer_id
    after = await store(engine).get_customer(ada.customer_id)
    assert after is not None and "account_number" not in after.known_fields


async def test_invalid_and_missing_keys_retry_then_operator(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    heard = await call(engine, new_phone(), ["9", "", ""])
    assert [h[0] for h in heard.heard] == [
        WELCOME, "ivr-engine/invalid-option", "ivr-engine/no-input"
    ]  # fmt: skip
    assert heard.variables["IVR_INTENT"] == "operator"  # the menu's fallback_intent


async def test_short_account_number_is_asked_again(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    heard = await call(engine, new_phone(), ["2", "12", new_account()])
    assert heard.heard[1:] == [ASK_ACCOUNT, ["ivr-engine/invalid-option", *ASK_ACCOUNT]]


async def test_an_account_number_with_star_or_letter_keys_is_asked_again_not_saved(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """The field's own rule (FieldSpec.accepts: digits 0-9, 6 to 10 of them) decides, not
    the length alone: ``4001*345`` is 8 keys but no account number."""
    phone, account = new_phone(), new_account()
    heard = await call(engine, phone, ["2", "4001*345", account])
    assert heard.heard[1:] == [ASK_ACCOUNT, ["ivr-engine/invalid-option", *ASK_ACCOUNT]]
    await call_event(store(engine), phone)
    (customer,) = await store(engine).find_customers(Identity("phone", phone))
    assert customer.known_fields["account_number"].value == account


async def test_invalid_entries_on_every_attempt_are_never_saved(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    heard = await call(engine, phone, ["6", "4001*345", "A0012345"])  # attempts: 2
    assert heard.heard[1:] == [ASK_ACCOUNT, ["ivr-engine/invalid-option", *ASK_ACCOUNT]]
    assert heard.variables["IVR_INTENT"] == "billing"  # routed without it
    event = await call_event(store(engine), phone)
    assert event.data["entered"] == []
    (customer,) = await store(engine).find_customers(Identity("phone", phone))
    assert "account_number" not in customer.known_fields


async def test_hangup_mid_menu_is_abandoned(engine: Engine, new_phone: Callable[[], str]) -> None:
    phone = new_phone()
    heard = await call(engine, phone, [], hangup_at_read=1)
    assert "IVR_OUTCOME" not in heard.variables
    event = await call_event(store(engine), phone)
    assert event.data["outcome"] == "abandoned" and event.intent is None
    assert engine.agi is not None and engine.agi.active_calls == 0


async def test_hangup_while_asked_for_account_keeps_the_intent(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    await call(engine, phone, ["6"], hangup_at_read=2)
    event = await call_event(store(engine), phone)
    assert (event.data["outcome"], event.intent) == ("abandoned", "billing")


# ---------------------------------------------------------------------------- failures


@pytest.mark.postgres
async def test_slow_database_gives_the_static_menu_within_the_deadline(
    pg_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """A real stall: another session holds an exclusive lock on the identities table."""
    phone = new_phone()
    engine = Engine(settings_for(pg_url, tmp_path, decision_deadline_ms=150))
    await engine.start()
    locker = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://"))
    try:
        await seed(store(engine), phone, ["billing"] * 5, {"account_number": "1234567"})
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE identities IN ACCESS EXCLUSIVE MODE")
        started = time.perf_counter()
        heard = await call(engine, phone, ["6", new_account()])
        elapsed = time.perf_counter() - started
        await lock.rollback()
        event = await call_event(store(engine), phone, timeout_s=20)
    finally:
        await locker.close()
        await engine.stop()
    assert labels(heard.heard[0])[5] == "billing"  # static order: billing on 6
    assert heard.variables["IVR_DECISION"] == "static"
    assert elapsed < 5  # the caller was not held for the lock (generous: shared machine)
    assert event.data["decision"]["personalised"] is False
    assert "150 ms decision deadline" in " ".join(event.data["decision"]["reasons"])
    assert event.data["decision_ms"] < 1000


async def test_database_down_static_menu_and_call_spooled(
    tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    url = "postgresql://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1
    engine = Engine(settings_for(url, tmp_path))
    await engine.start()
    try:
        heard = await call(engine, phone, ["1"])
    finally:
        await engine.stop()
    assert heard.variables["IVR_DECISION"] == "static"
    assert heard.variables["IVR_INTENT"] == "new_service"
    spooled = (tmp_path / "spool" / SPOOL_FILE).read_text()
    assert phone in spooled and '"intent":"new_service"' in spooled


async def test_spool_is_replayed_and_unreadable_lines_are_set_aside(
    sqlite_url: str,
    tmp_path: Path,
    new_phone: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    phone = new_phone()
    down = Engine(settings_for("postgresql://postgres@127.0.0.1:1/nothing", tmp_path))
    await down.start()
    try:
        await call(down, phone, ["1"])
    finally:
        await down.stop()
    spool = tmp_path / "spool" / SPOOL_FILE
    spool.write_text(spool.read_text() + "{not json\n")
    up = Engine(settings_for(sqlite_url, tmp_path))
    with caplog.at_level(logging.INFO, logger="ivr_engine.flows.recorder"):
        await up.start()  # replays the spool on start
        try:
            event = await call_event(store(up), phone)
        finally:
            await up.stop()
    assert event.intent == "new_service"
    replayed = "1 spooled call(s) written to the timeline (0 still spooled)"
    assert replayed in [r.getMessage() for r in caplog.records]  # it was silent
    assert not spool.exists()
    assert (tmp_path / "spool" / REJECTED_FILE).read_text() == "{not json\n"


async def test_number_shared_by_two_customers_is_not_guessed(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    first = await seed(store(engine), phone, ["billing"] * 5)
    second = await seed(store(engine), phone, ["moving"] * 5)
    assert engine.recorder is not None
    written = engine.recorder.written
    heard = await call(engine, phone, ["1"])
    assert heard.variables["IVR_DECISION"] == "static"
    assert heard.variables["IVR_CUSTOMER_ID"] == ""
    for _ in range(500):  # until the call is on the timeline (somewhere)
        if engine.recorder.written > written:
            break
        await asyncio.sleep(0.02)
    assert engine.recorder.written > written
    for customer in (first, second):
        page = await store(engine).timeline(customer.customer_id)
        assert not [e for e in page.events if e.event_id.startswith("voice:")]


async def test_open_chat_case_is_offered_and_continued_without_the_ivr(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """Started in chat about moving, then calls: 'continue where you left off? press 1'."""
    phone = new_phone()
    ada = await seed(store(engine), phone, ["billing"] * 4)
    await store(engine).append_events(
        [
            NewTimelineEvent(
                f"chat:{ada.customer_id}:1",
                ada.customer_id,
                datetime.now(UTC) - timedelta(hours=2),
                "chat",
                "message.inbound",
                intent="moving",
                case_id="CASE-42",
                data={"text": "I am moving next month"},
            )
        ]
    )
    heard = await call(engine, phone, ["1"])
    assert heard.heard == [
        [
            WELCOME,
            "ivr-engine/continue-open-case",
            "ivr-engine/shortcut-topic-moving",
            "ivr-engine/continue-question",
        ]
    ]  # no menu and no field questions: moving needs account + postcode, not asked
    assert heard.variables["IVR_INTENT"] == "moving"
    assert heard.variables["IVR_CASE_ID"] == "CASE-42"
    event = await call_event(store(engine), phone)
    assert event.case_id == "CASE-42"  # the call joins the chat's thread
    assert [s["step"] for s in event.data["path"]] == ["shortcut", "continued", "fields_skipped"]
