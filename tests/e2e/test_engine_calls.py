"""The engine end to end: SIPp callers -> Asterisk 22 -> FastAGI -> the engine -> timeline.

What a caller heard is asserted from what Asterisk itself reported over AMI: every AGI
command (``AGIExecStart``: the ``EXEC Read`` prompt lists, in order) and the dialplan's
``IvrRouted`` / ``IvrFallback`` user events; what was stored, from the timeline.

Timings: the welcome prompt plays ~0.7 s after the INVITE (Answer waits for media); keys
are pressed while a prompt list plays (Read stops playback on the first key).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ami import AmiClient
from conftest import Testbed
from engine_harness import (
    engine_settings,
    menu_order,
    private_postgres,
    read_prompt_lists,
    running_engine,
    seed_customer,
    store_of,
    wait_for_call_event,
)
from sipp import SippResult, run_sipp_call

from ivr_engine.ports import Identity
from ivr_engine.timeline.migrate import upgrade

DEFAULT_ORDER = [
    ("new-service", "1"),
    ("tech-support", "2"),
    ("moving", "3"),
    ("outage", "4"),
    ("cancel", "5"),
    ("billing", "6"),
    ("operator", "0"),
]
ASK_ACCOUNT = ["ivr-engine/enter-account-number"]


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'timeline.db'}"


def assert_sipp_ok(result: SippResult) -> None:
    assert result.ok, result.describe()


async def test_new_caller_hears_the_default_order_and_the_choice_is_stored(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551240001"
    async with running_engine(engine_settings(sqlite_url(tmp_path), tmp_path / "spool")) as eng:
        result = await run_sipp_call([("wait", 2500), ("dtmf", "1")], caller_id=caller)
        routed = await ami.wait_for_event(
            "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, timeout_s=15
        )
        customer, event = await wait_for_call_event(store_of(eng), caller)

    assert_sipp_ok(result)
    lists = read_prompt_lists(ami, caller)
    assert lists[0][0] == "ivr-engine/welcome"
    assert menu_order(lists[0]) == DEFAULT_ORDER
    assert len(lists) == 1  # new_service needs no fields: nothing else asked
    assert (routed["Intent"], routed["Target"]) == ("new_service", "queue:sales")
    assert routed["Decision"] == "static" and routed["Customer"] == ""
    assert routed["Verified"] == "0"  # IVR_VERIFIED: a first-time caller verifies nothing
    # The first call created the customer for this number; the call is on their timeline.
    assert [i.value for i in customer.identities] == [caller]
    assert event.intent == "new_service" and event.channel == "voice"
    assert event.data["outcome"] == "routed"
    assert [step["step"] for step in event.data["path"]] == ["menu"]


async def test_billing_caller_hears_billing_first_and_1_selects_it(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551240002"
    history = ["billing", "billing", "tech_support", "billing", "billing", "billing"]
    async with running_engine(engine_settings(sqlite_url(tmp_path), tmp_path / "spool")) as eng:
        seeded = await seed_customer(
            store_of(eng), caller, history, fields={"account_number": "40012345"}
        )
        # Decline the shortcut with 2 (~2.5 s), then press 1 in the reordered menu.
        result = await run_sipp_call(
            [("wait", 2500), ("dtmf", "2"), ("wait", 2500), ("dtmf", "1")], caller_id=caller
        )
        routed = await ami.wait_for_event(
            "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, timeout_s=15
        )
        _, event = await wait_for_call_event(store_of(eng), caller)

    assert_sipp_ok(result)
    shortcut, menu, *rest = read_prompt_lists(ami, caller)
    assert shortcut == [
        "ivr-engine/welcome",
        "ivr-engine/shortcut-calling-about",
        "ivr-engine/shortcut-topic-billing",
        "ivr-engine/shortcut-again",
    ]
    assert menu_order(menu)[:2] == [("billing", "1"), ("new-service", "2")]  # 1 tech_support: stays
    assert menu_order(menu)[-1] == ("operator", "0")  # pinned
    assert rest == []  # the account number is known: not asked
    assert (routed["Intent"], routed["Customer"]) == ("billing", seeded.customer_id)
    assert routed["Decision"] == "personalised"
    assert event.customer_id == seeded.customer_id and event.intent == "billing"
    assert event.data["prefilled"] == ["account_number"]
    assert event.data["decision"]["shortcut"] == "billing"
    assert any("billing" in reason for reason in event.data["decision"]["reasons"])


async def test_shortcut_accepted_with_1_routes_to_billing(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551240003"
    async with running_engine(engine_settings(sqlite_url(tmp_path), tmp_path / "spool")) as eng:
        await seed_customer(
            store_of(eng), caller, ["billing"] * 4, fields={"account_number": "40012399"}
        )
        result = await run_sipp_call([("wait", 2500), ("dtmf", "1")], caller_id=caller)
        routed = await ami.wait_for_event(
            "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, timeout_s=15
        )
    assert_sipp_ok(result)
    assert len(read_prompt_lists(ami, caller)) == 1  # only the shortcut offer was played
    assert routed["Intent"] == "billing"


async def test_unknown_account_is_asked_saved_and_not_asked_again(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551240004"
    async with running_engine(engine_settings(sqlite_url(tmp_path), tmp_path / "spool")) as eng:
        # Tech support (2) needs the account number: typed and ended with '#'.
        first = await run_sipp_call(
            [("wait", 2500), ("dtmf", "2"), ("wait", 1500), ("dtmf", "40012345#")],
            caller_id=caller,
        )
        await ami.wait_for_event(
            "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, timeout_s=20
        )
        customer, event = await wait_for_call_event(store_of(eng), caller)
        stored = await store_of(eng).find_customers(Identity("phone", caller))
        first_lists = read_prompt_lists(ami, caller)

        mark = ami.mark()
        second = await run_sipp_call([("wait", 2500), ("dtmf", "2")], caller_id=caller)
        await ami.wait_for(
            lambda e: e.get("UserEvent") == "IvrRouted" and e.get("CallerIDNum") == caller,
            since=mark,
            timeout_s=15,
        )

    assert_sipp_ok(first)
    assert_sipp_ok(second)
    assert first_lists[1] == ASK_ACCOUNT
    assert event.intent == "tech_support" and event.data["entered"] == ["account_number"]
    (saved,) = stored
    field = saved.known_fields["account_number"]
    assert (field.value, field.source_channel) == ("40012345", "voice")
    # The second call: identified by caller ID, the account number is prefilled.
    second_lists = read_prompt_lists(ami, caller)[len(first_lists) :]
    assert ASK_ACCOUNT not in second_lists
    assert customer.customer_id == saved.customer_id


async def test_a_wrong_postcode_is_asked_again_and_the_right_one_verifies_the_caller(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    """Moving home (3) asks the known, sensitive postcode (``GET DATA``: the digits in no
    channel variable); a wrong one hears "that does not match our records" (``Playback``:
    keys pressed meanwhile are not taken) and is asked again; the right one verifies the
    caller, and the dialplan gets ``IVR_VERIFIED=1`` (``IvrRouted``'s ``Verified``)."""
    caller = "+15551240009"
    async with running_engine(engine_settings(sqlite_url(tmp_path), tmp_path / "spool")) as eng:
        await seed_customer(
            store_of(eng), caller, fields={"account_number": "40012377", "postcode": "75001"}
        )
        result = await run_sipp_call(
            [
                ("wait", 2500),
                ("dtmf", "3"),
                ("wait", 1500),
                ("dtmf", "99999#"),
                ("wait", 5500),  # the no-match prompt (3.7 s) plays first
                ("dtmf", "75001#"),
            ],
            caller_id=caller,
        )
        routed = await ami.wait_for_event(
            "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, timeout_s=30
        )
        _, event = await wait_for_call_event(store_of(eng), caller)

    assert_sipp_ok(result)
    asked = [c for c in ami.agi_commands(caller_id=caller) if "postcode" in c or "match" in c]
    assert asked == [
        'GET DATA "ivr-engine/enter-postcode" 8000 8',
        'EXEC "Playback" "ivr-engine/no-match"',
        'GET DATA "ivr-engine/enter-postcode" 8000 8',
    ]
    assert routed["Verified"] == "1" and routed["Intent"] == "moving"
    assert event.data["verified"] is True
    assert [step["step"] for step in event.data["path"]] == [
        "menu", "prefilled", "asked", "verification_failed", "asked", "verified"
    ]  # fmt: skip
    assert "99999" not in str(event.data["path"]) and "75001" not in str(event.data["path"])
    assert event.data["entered"] == []


async def test_caller_hanging_up_mid_menu_is_recorded_as_abandoned(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551240005"
    async with running_engine(engine_settings(sqlite_url(tmp_path), tmp_path / "spool")) as eng:
        result = await run_sipp_call(caller_id=caller, hangup_after_ms=3000)
        _, event = await wait_for_call_event(store_of(eng), caller)
        assert eng.agi is not None
        await asyncio.sleep(0.5)
        active = eng.agi.active_calls

    assert_sipp_ok(result)
    assert result.hung_up_by == "caller"
    assert event.data["outcome"] == "abandoned" and event.intent is None
    assert event.data["path"][-1]["step"] == "hangup"
    assert active == 0  # the engine closed the AGI session once Asterisk said HANGUP
    assert (
        ami.find(lambda e: e.get("UserEvent") == "IvrRouted" and e.get("CallerIDNum") == caller)
        is None
    )


async def test_database_down_gives_the_static_menu_and_the_call_is_kept(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551240006"
    with private_postgres() as pg:
        await upgrade(pg.url)  # production migrates explicitly (`ivr-engine migrate`)
        async with running_engine(engine_settings(pg.url, tmp_path / "spool")) as eng:
            seeded = await seed_customer(
                store_of(eng), caller, ["billing"] * 5, fields={"account_number": "40012345"}
            )
            pg.stop()
            # Static order: billing is on 6; its account number cannot be looked up now.
            result = await run_sipp_call(
                [("wait", 2500), ("dtmf", "6"), ("wait", 1500), ("dtmf", "40012345#")],
                caller_id=caller,
            )
            routed = await ami.wait_for_event(
                "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, timeout_s=20
            )
            lists = read_prompt_lists(ami, caller)
            spool = (tmp_path / "spool" / "calls.jsonl").read_text()
            pg.start()  # the recorder replays the spool once the database answers again
            _, event = await wait_for_call_event(store_of(eng), caller, timeout_s=30)

    assert_sipp_ok(result)
    assert menu_order(lists[0]) == DEFAULT_ORDER
    assert lists[1] == ASK_ACCOUNT
    assert (routed["Intent"], routed["Decision"]) == ("billing", "static")
    assert caller in spool
    assert event.customer_id == seeded.customer_id  # found by phone on replay
    assert event.data["outcome"] == "routed" and event.intent == "billing"
    reasons = event.data["decision"]["reasons"]
    assert any("timeline" in reason for reason in reasons), reasons
    assert event.data["decision"]["personalised"] is False


async def test_engine_down_the_dialplan_serves_its_own_static_menu(
    asterisk: Testbed, ami: AmiClient
) -> None:
    caller = "+15551240007"
    result = await run_sipp_call([("wait", 3000), ("dtmf", "6")], caller_id=caller)
    fallback = await ami.wait_for_event(
        "UserEvent", UserEvent="IvrFallback", CallerIDNum=caller, timeout_s=15
    )
    routed = await ami.wait_for_event(
        "UserEvent", UserEvent="IvrRouted", CallerIDNum=caller, timeout_s=15
    )
    assert_sipp_ok(result)
    assert fallback["AgiStatus"] == "FAILURE"
    assert (routed["Intent"], routed["Decision"]) == ("billing", "dialplan-fallback")


async def test_star_continues_by_sms_and_asterisk_says_goodbye(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551240008"
    settings = engine_settings(sqlite_url(tmp_path), tmp_path / "spool").model_copy(
        update={"continuation_secret": "cd" * 32, "public_url": "https://seed.example"}
    )
    async with running_engine(settings) as eng:
        result = await run_sipp_call([("wait", 2500), ("dtmf", "*")], caller_id=caller)
        continued = await ami.wait_for_event(
            "UserEvent", UserEvent="IvrContinued", CallerIDNum=caller, timeout_s=15
        )
        customer, event = await wait_for_call_event(store_of(eng), caller)
        page = await store_of(eng).timeline(customer.customer_id)
    assert_sipp_ok(result)
    assert result.hung_up_by == "asterisk"  # after the goodbye prompt
    assert read_prompt_lists(ami, caller)[0][-1] == "ivr-engine/continue-sms-offer"
    assert event.data["outcome"] == "continued"
    (sms,) = [e for e in page.events if e.channel == "sms"]
    assert sms.case_id == event.case_id == continued["Case"]
    assert "https://seed.example/c/" in str(sms.data["text"])
    assert (
        ami.find(lambda e: e.get("UserEvent") == "IvrRouted" and e.get("CallerIDNum") == caller)
        is None
    )
