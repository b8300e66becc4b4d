"""Finding 6 on FreeSWITCH: after a ``sensitive`` field's ``read``, ``unset IVR_READ``, so
the digits are not in every later event's ``variable_IVR_READ`` nor in the CDR. Menu keys and
other fields get no extra ``unset``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ivr_engine.app import Engine
from tests.component.fake_freeswitch import FsCall
from tests.component.test_esl_outbound_calls import esl_settings, fs_call, running_engine


@pytest.fixture
async def engine(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with running_engine(esl_settings(sqlite_url, tmp_path)) as running:
        yield running


async def test_the_postcode_is_unset_after_its_read(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    call = await fs_call(engine, FsCall(new_phone(), ["3", "40012345", "1234"]))
    apps = [app for app, _ in call.apps]
    assert apps == ["read", "read", "read", "unset", "multiset"]
    assert call.apps[3] == ("unset", "IVR_READ")
    assert "IVR_READ" not in call.variables
    assert call.variables["IVR_OUTCOME"] == "routed"


async def test_menu_keys_and_other_fields_get_no_unset(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    call = await fs_call(engine, FsCall(new_phone(), ["2", "40012345"]))
    assert [app for app, _ in call.apps] == ["read", "read", "multiset"]
    assert call.variables["IVR_READ"] == "40012345"
