"""Knowledge-based ID&V in the IVR: a known sensitive field (the sample menu's postcode) is
asked, and the answer checked against the identified customer's value. In-process engine,
real FastAGI socket, real timeline (SQLite and PostgreSQL), as in test_ivr_flow.py.

Right answer: the call is verified (the call event says so, the path names the field, not
the value) and the stored value stays as it was. Wrong answer: asked once more after "that
does not match our records" (``verification_attempts``, 2 in the sample menu); wrong again:
not verified, and the customer's stored value is NOT overwritten (whoever dials with
someone's caller ID, or keys in their account number, cannot change it). Nothing known: the
answer is saved as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ivr_engine.agents.model import AgentState
from ivr_engine.app import Engine
from ivr_engine.desktop.pop import ScreenPopJson
from ivr_engine.ports import StoredEvent
from tests.component.test_agent_routing_flow import with_agents
from tests.component.test_ivr_flow import (
    ASK_ACCOUNT,
    ASK_POSTCODE,
    REPO,
    call,
    call_event,
    new_account,
    seed,
    settings_for,
    store,
)

POSTCODE = "75001"
NO_MATCH = "ivr-engine/no-match"
ASKED_AGAIN = [NO_MATCH, *ASK_POSTCODE]  # "that does not match our records", then the question


@pytest.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    running = Engine(settings_for(database_url, tmp_path))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def steps(event: StoredEvent, name: str) -> list[dict[str, Any]]:
    return [s for s in event.data["path"] if s["step"] == name]


async def postcode_of(engine: Engine, customer_id: str) -> tuple[str, str]:
    customer = await store(engine).get_customer(customer_id)
    assert customer is not None
    field = customer.known_fields["postcode"]
    return field.value, field.source_channel


async def test_right_postcode_verifies_the_caller_and_is_not_saved_again(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone, account = new_phone(), new_account()
    ada = await seed(store(engine), phone, [], {"account_number": account, "postcode": POSTCODE})
    heard = await call(engine, phone, ["3", POSTCODE])  # moving: account known, postcode asked
    assert heard.heard[1:] == [ASK_POSTCODE]
    assert heard.variables["IVR_VERIFIED"] == "1"  # handed to the dialplan with the routing
    event = await call_event(store(engine), phone)
    assert event.data["verified"] is True
    assert steps(event, "verified") == [{"step": "verified", "field": "postcode"}]
    assert POSTCODE not in str(event.data["path"])  # the field's name, never its value
    assert "postcode" not in event.data["entered"]
    assert await postcode_of(engine, ada.customer_id) == (POSTCODE, "chat")


async def test_two_wrong_postcodes_leave_the_caller_unverified_and_the_stored_one_unchanged(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """Someone dialling with Ada's caller ID does not know her postcode: asked once more,
    wrong again, the call goes on (routed as usual), unverified, and Ada's postcode is still
    hers. Both answers are on the path (the field, never the value)."""
    phone, account = new_phone(), new_account()
    ada = await seed(store(engine), phone, [], {"account_number": account, "postcode": POSTCODE})
    heard = await call(engine, phone, ["3", "99999", "88888"])
    assert heard.heard[1:] == [ASK_POSTCODE, ASKED_AGAIN]  # two answers, not three
    assert heard.variables["IVR_OUTCOME"] == "routed"
    assert heard.variables["IVR_VERIFIED"] == "0"
    assert heard.variables["IVR_TARGET"] == "queue:moving"
    event = await call_event(store(engine), phone)
    assert await postcode_of(engine, ada.customer_id) == (POSTCODE, "chat")
    assert event.data["verified"] is False
    assert steps(event, "asked") == [{"step": "asked", "field": "postcode", "answered": True}] * 2
    assert (
        steps(event, "verification_failed")
        == [{"step": "verification_failed", "field": "postcode"}] * 2
    )
    assert "99999" not in str(event.data["path"]) and "88888" not in str(event.data["path"])
    assert "postcode" not in event.data["entered"]


async def test_a_wrong_postcode_then_the_right_one_verifies_the_caller(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone, account = new_phone(), new_account()
    ada = await seed(store(engine), phone, [], {"account_number": account, "postcode": POSTCODE})
    heard = await call(engine, phone, ["3", "99999", POSTCODE])
    assert heard.heard[1:] == [ASK_POSTCODE, ASKED_AGAIN]
    assert heard.variables["IVR_VERIFIED"] == "1"
    event = await call_event(store(engine), phone)
    assert event.data["verified"] is True
    assert [s for s in event.data["path"] if s["step"] not in ("menu", "prefilled")] == [
        {"step": "asked", "field": "postcode", "answered": True},
        {"step": "verification_failed", "field": "postcode"},
        {"step": "asked", "field": "postcode", "answered": True},
        {"step": "verified", "field": "postcode"},
    ]
    assert "postcode" not in event.data["entered"]
    assert await postcode_of(engine, ada.customer_id) == (POSTCODE, "chat")


async def test_no_answer_when_asked_again_leaves_the_caller_unverified(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """The second question goes unanswered (its own no-input retries too): unverified."""
    phone, account = new_phone(), new_account()
    await seed(store(engine), phone, [], {"account_number": account, "postcode": POSTCODE})
    heard = await call(engine, phone, ["3", "99999"])
    assert heard.heard[1:3] == [ASK_POSTCODE, ASKED_AGAIN]
    assert heard.variables["IVR_VERIFIED"] == "0"
    assert heard.variables["IVR_OUTCOME"] == "routed"
    event = await call_event(store(engine), phone)
    assert [s["answered"] for s in steps(event, "asked")] == [True, False]


def menus_with(tmp_path: Path, old: str, new: str) -> Path:
    """The sample menu with ``old`` replaced by ``new`` (once), in a directory of its own."""
    text = (REPO / "config/menus/main.yaml").read_text()
    assert old in text
    menus = tmp_path / "menus"
    menus.mkdir()
    (menus / "main.yaml").write_text(text.replace(old, new, 1))
    return menus


async def test_one_verification_attempt_per_menu_means_no_second_question(
    database_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    menus = menus_with(tmp_path, "verification_attempts: 2", "verification_attempts: 1")
    engine = Engine(settings_for(database_url, tmp_path, menus_dir=menus))
    await engine.start()
    try:
        phone, account = new_phone(), new_account()
        await seed(store(engine), phone, [], {"account_number": account, "postcode": POSTCODE})
        heard = await call(engine, phone, ["3", "99999", POSTCODE])
        assert heard.heard[1:] == [ASK_POSTCODE]
        assert heard.variables["IVR_VERIFIED"] == "0"
        event = await call_event(store(engine), phone)
        assert len(steps(event, "verification_failed")) == 1
    finally:
        await engine.stop()


async def test_a_postcode_not_known_yet_is_saved_with_nothing_to_check(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone, account = new_phone(), new_account()
    ada = await seed(store(engine), phone, [], {"account_number": account})
    await call(engine, phone, ["3", POSTCODE])
    event = await call_event(store(engine), phone)
    assert event.data["verified"] is False
    assert event.data["entered"] == ["postcode"]
    assert not steps(event, "verified") and not steps(event, "verification_failed")
    assert await postcode_of(engine, ada.customer_id) == (POSTCODE, "voice")


@pytest.mark.parametrize(("keyed", "verified"), [([POSTCODE], True), (["99999", "88888"], False)])
async def test_account_number_keyed_in_checks_that_customers_postcode(
    engine: Engine, new_phone: Callable[[], str], keyed: list[str], verified: bool
) -> None:
    """An unknown line keys in Ada's account number: the postcode asked next is compared
    with Ada's; a wrong one is not saved onto her."""
    known, other, account = new_phone(), new_phone(), new_account()
    ada = await seed(store(engine), known, [], {"account_number": account, "postcode": POSTCODE})
    heard = await call(engine, other, ["3", account, *keyed])
    assert heard.heard[1:] == [ASK_ACCOUNT, ASK_POSTCODE, *([ASKED_AGAIN] if not verified else [])]
    assert heard.variables["IVR_CUSTOMER_ID"] == ada.customer_id
    event = await call_event(store(engine), known)
    assert event.data["identified_by"] == "account_number"
    assert await postcode_of(engine, ada.customer_id) == (POSTCODE, "chat")
    assert event.data["verified"] is verified


# ------------------------------------------------- a menu asking the postcode first


def postcode_first_menus(tmp_path: Path) -> Path:
    """The sample menu with the account number sensitive too, and ``cancel`` asking the
    postcode before the account number."""
    text = (REPO / "config/menus/main.yaml").read_text()
    text = text.replace("sensitive: false", "sensitive: true", 1)  # account_number
    asks = "required_fields: [account_number]\n    target: queue:retention"
    assert asks in text
    text = text.replace(
        asks, "required_fields: [postcode, account_number]\n    target: queue:retention"
    )
    menus = tmp_path / "menus"
    menus.mkdir()
    (menus / "main.yaml").write_text(text)
    return menus


@pytest.fixture
async def postcode_first(database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    menus = postcode_first_menus(tmp_path)
    running = Engine(settings_for(database_url, tmp_path, menus_dir=menus))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.mark.parametrize(
    ("keyed", "asked_after"),
    [
        ([POSTCODE], []),
        (["99999", POSTCODE], [ASKED_AGAIN]),
        (["99999", "88888"], [ASKED_AGAIN, ASK_ACCOUNT]),
    ],
)
async def test_a_verified_caller_is_not_asked_the_other_sensitive_fields(
    postcode_first: Engine,
    new_phone: Callable[[], str],
    keyed: list[str],
    asked_after: list[list[str]],
) -> None:
    """Once the postcode matched (at the first or the second answer), the rest of the call
    plans as for a verified caller: the known (sensitive) account number is prefilled; after
    two wrong postcodes it is asked."""
    engine = postcode_first
    phone, account = new_phone(), new_account()
    await seed(store(engine), phone, [], {"account_number": account, "postcode": POSTCODE})
    heard = await call(engine, phone, ["5", *keyed, account])  # 5: cancel (postcode, account)
    assert heard.heard[1:] == [ASK_POSTCODE, *asked_after]
    verified = ASK_ACCOUNT not in asked_after
    event = await call_event(store(engine), phone)
    assert event.data["verified"] is verified
    assert event.data["prefilled"] == (["account_number"] if verified else [])


@pytest.mark.parametrize(
    ("keyed", "verified"),
    [(POSTCODE, True), ("99999", False), ("99999", True)],
    ids=["right", "wrong-twice", "wrong-then-right"],
)
async def test_a_postcode_keyed_before_the_account_number_is_checked_against_its_customer(
    postcode_first: Engine, new_phone: Callable[[], str], keyed: str, verified: bool
) -> None:
    """An unknown line: nothing to check the postcode against yet; the account number then
    makes the call Ada's, and the postcode is checked against hers, never saved onto her. A
    wrong one is asked again after the account number (its second answer)."""
    engine = postcode_first
    known, other, account = new_phone(), new_phone(), new_account()
    ada = await seed(store(engine), known, [], {"account_number": account, "postcode": POSTCODE})
    again = [] if keyed == POSTCODE else [POSTCODE if verified else "88888"]
    heard = await call(engine, other, ["5", keyed, account, *again])
    assert heard.heard[1:] == [ASK_POSTCODE, ASK_ACCOUNT, *([ASKED_AGAIN] if again else [])]
    assert heard.variables["IVR_CUSTOMER_ID"] == ada.customer_id
    assert heard.variables["IVR_VERIFIED"] == ("1" if verified else "0")
    event = await call_event(store(engine), known)
    assert await postcode_of(engine, ada.customer_id) == (POSTCODE, "chat")
    assert event.data["verified"] is verified
    assert "postcode" not in event.data["entered"]


# ------------------------------------------------- the agent's screen pop


@pytest.fixture
async def with_agent(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    running = with_agents(sqlite_url, tmp_path)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def pop_of(engine: Engine, agent_id: str, timeout_s: float = 10) -> ScreenPopJson:
    """The agent's screen pop, sent in the background once the call is routed."""
    center = engine.contact_center
    assert center is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pop = center.hub.latest_pop(agent_id)
        if pop is not None:
            return pop
        await asyncio.sleep(0.02)
    raise AssertionError(f"no screen pop for {agent_id}")


async def test_the_agents_screen_pop_says_the_caller_is_verified(
    with_agent: Engine, new_phone: Callable[[], str]
) -> None:
    """The pop then shows the customer's sensitive values unmasked (``FieldMasking``)."""
    engine = with_agent
    assert engine.contact_center is not None
    await engine.contact_center.agents.set_state("a2", AgentState.AVAILABLE)  # moving: 3
    phone, account = new_phone(), new_account()
    await seed(store(engine), phone, [], {"account_number": account, "postcode": POSTCODE})
    heard = await call(engine, phone, ["3", POSTCODE])
    assert heard.variables["IVR_AGENT_ID"] == "a2"
    pop = await pop_of(engine, "a2")
    assert pop["verified"] is True
    assert pop["verified_by"] == ["postcode"]  # "verified by postcode"
    postcode = {"name": "postcode", "value": POSTCODE, "masked": False, "source": "verified"}
    assert postcode in pop["fields"]


async def test_a_postcode_keyed_while_the_timeline_is_stalled_is_not_saved_unchecked(
    pg_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """The caller ID could not be looked up (another session locks the identities table past
    the decision deadline): nothing to check the postcode against, and the recorder would
    store it under the line's customer, Ada: it is not saved."""
    phone, account = new_phone(), new_account()
    engine = Engine(settings_for(pg_url, tmp_path, decision_deadline_ms=150))
    await engine.start()
    locker = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://"))
    try:
        ada = await seed(
            store(engine), phone, [], {"account_number": account, "postcode": POSTCODE}
        )
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE identities IN ACCESS EXCLUSIVE MODE")
        heard = await call(engine, phone, ["3", account, "99999"])
        await lock.rollback()
        event = await call_event(store(engine), phone, timeout_s=20)
        assert heard.variables["IVR_DECISION"] == "static"
        assert await postcode_of(engine, ada.customer_id) == (POSTCODE, "chat")
        assert steps(event, "not_saved") == [
            {"step": "not_saved", "field": "postcode", "reason": "caller not looked up"}
        ]
    finally:
        await locker.close()
        await engine.stop()
