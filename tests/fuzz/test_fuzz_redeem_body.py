"""Targeted property tests: the continuation redeem endpoint answers any body of at
most ``MAX_BODY`` bytes that is not ``{"token": "<non-empty>"}`` with a 400, never a 500:
``json.loads`` raises ``RecursionError`` (not a ``ValueError``) on deep nesting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_engine.omni.redeem_api import MAX_BODY, redeem_routes

URL = "/v1/continuations/redeem"


def _app() -> web.Application:
    app = web.Application()
    # tokens and store are never reached for a body without a token
    app.add_routes(redeem_routes(cast(Any, None), cast(Any, None), lambda: datetime.now(UTC)))
    return app


async def test_deeply_nested_body_is_a_400() -> None:
    async with TestClient(TestServer(_app())) as client:
        for body in (b"[" * 2000, b'{"a":' * 800, b"[" * MAX_BODY):  # all within MAX_BODY
            resp = await client.post(URL, data=body)
            assert resp.status == 400, (body[:10], resp.status)


_atoms = st.sampled_from([b"[", b"]", b"{", b"}", b'"token"', b":", b",", b'"x"', b"1", b"\xff"])


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 50) | st.integers(3500, MAX_BODY - 7 * 20),  # tail: 20 atoms of <= 7 bytes
    st.lists(_atoms, max_size=20).map(b"".join),
)
def test_any_tokenless_body_is_a_400(depth: int, tail: bytes) -> None:
    # NB: hypothesis raises the recursion limit while a test runs (ensure_free_stackframes),
    # so nesting must go well past 1000 levels to show a RecursionError here (and in between
    # it depends on the stack depth of the moment: flaky)
    import asyncio
    import json

    from hypothesis import assume

    try:
        doc = json.loads(tail) if not depth else None
    except ValueError:
        doc = None
    assume(not (isinstance(doc, dict) and isinstance(doc.get("token"), str) and doc["token"]))

    async def post() -> int:
        async with TestClient(TestServer(_app())) as client:
            resp = await client.post(URL, data=b"[" * depth + tail)
            return resp.status

    assert asyncio.run(post()) == 400
