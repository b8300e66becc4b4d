"""Which menu a call gets: the dialplan names it (``agi://host/ivr?menu=NAME``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr_engine.flows.call_record import CallRecord
from ivr_engine.flows.ivr_flow import MAX_WARNED_MENU_NAMES, IvrFlow
from ivr_engine.menu_config import load_menus
from ivr_engine.ports import LookupResult

MENUS = load_menus(Path(__file__).resolve().parents[2] / "config/menus")


class NoLookup:
    async def lookup(self, kind: str, value: str, *, max_events: int) -> LookupResult:
        return LookupResult(history=None)


class NoSink:
    def submit(self, record: CallRecord) -> None:
        pass


def flow() -> IvrFlow:
    return IvrFlow(menus=MENUS, lookup=NoLookup(), sink=NoSink(), clock=lambda: datetime.now(UTC))


def test_a_loaded_menu_is_played_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert flow().menu_for("main").name == "main"
    assert not caplog.records


def test_an_unknown_menu_name_plays_main_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = flow()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert calls.menu_for("mian").name == "main"
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["menu 'mian' is not loaded (loaded: main): playing 'main' instead"]


def test_unknown_names_from_the_wire_cannot_grow_the_log_or_memory_without_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = flow()
    with caplog.at_level(logging.WARNING):
        for n in range(MAX_WARNED_MENU_NAMES * 3):
            calls.menu_for(f"junk-{n}")
    assert len(caplog.records) == MAX_WARNED_MENU_NAMES
