"""Second-round property tests: the timeline HTTP API (customers, events, timelines,
messages, conversations) against an in-process app with a SQLite timeline.

For any JSON body, query string and path parameter: never a 500; every error is
``{"error": {"code": str, "message": str, ["details": [{"loc", "msg", "type"}]]}}``; a
replay of an accepted ``POST /v1/events`` or ``POST /v1/messages`` answers 200 with the
same ids; paging a timeline or a conversation ends, each page within ``limit``."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr_engine.api.app import create_api_app
from ivr_engine.timeline import open_timeline

PHONE = "+14155550100"

# ------------------------------------------------------------------------ strategies

_odd_text = st.sampled_from(
    ["", " ", "x", "a" * 300, "\x00", "\t", "\u2028", "\ud7ff", "İ", "²", "٣", "+1", PHONE,
     "a@b.co", "A@B.CO ", "2024-02-30T00:00:00Z", "0001-01-01T00:00:00+23:59",
     "9999-12-31T23:59:59-14:00", "2020-01-01T00:00:00", "2020-01-01T00:00:00Z", "phone",
     "email", "chat", "account", "web", "sms", "voice", "inbound", "outbound", "call.x",
     "null", "1e999", "-0", "e" * 201, "c" * 37]
)  # fmt: skip
_json_atom = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    _odd_text, st.text(max_size=20),
)  # fmt: skip
_json = st.recursive(
    _json_atom,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)

_VALID: dict[str, dict[str, Any]] = {
    "event": {"event_id": "e1", "identity": {"kind": "phone", "value": PHONE},
              "channel": "web", "event_type": "form.sent", "data": {"a": 1},
              "fields": {"zip": "12345"}},
    "customer": {"identities": [{"kind": "email", "value": "a@b.co"}], "display_name": "A",
                 "fields": {"zip": "1"}},
    "message": {"message_id": "m1", "channel": "sms", "direction": "inbound", "from": PHONE,
                "text": "hello"},
    "patch": {"display_name": "B"},
    "identity": {"kind": "phone", "value": PHONE},
    "merge": {"source_customer_id": "x", "reason": "dup"},
    "field": {"value": "v", "source_channel": "web"},
    "close": {"reason": "done"},
}  # fmt: skip


@st.composite
def _mutated(draw: st.DrawFn, kind: str) -> Any:
    body: Any = json.loads(json.dumps(_VALID[kind]))
    for _ in range(draw(st.integers(0, 3))):
        keys = sorted(body) if isinstance(body, dict) else []
        action = draw(st.sampled_from(["drop", "set", "add", "whole"]))
        if action == "drop" and keys:
            body.pop(draw(st.sampled_from(keys)))
        elif action == "set" and keys:
            body[draw(st.sampled_from(keys))] = draw(_json)
        elif action == "add" and isinstance(body, dict):
            body[draw(st.sampled_from(["x", "customer_id", "identity", "occurred_at", "intent",
                                       "case_id", "subject", "agent_id", "to", "conversation_id",
                                       "verified", "source_channel"]))] = draw(_json)  # fmt: skip
        elif action == "whole":
            body = draw(_json)
    return body


_path_part = st.sampled_from(
    ["x", "c" * 36, "c" * 37, "%00", "%C3%A9", "..", "a%2Fb", "%20", "-", "_", "1", "zip", "Zip"]
)
_query = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "limit",
                "before",
                "after",
                "phone",
                "email",
                "kind",
                "value",
                "x",
                "menu",
                "customer_id",
            ]
        ),
        st.sampled_from(
            [
                "",
                "0",
                "1",
                "200",
                "201",
                "-1",
                "1e3",
                "²",
                "9" * 30,
                str(2**62),
                PHONE,
                "a@b.co",
                "phone",
                "email",
                "main",
                "%00",
                "1_0",
                " 5",
            ]
        ),
    ),
    max_size=3,
).map(lambda pairs: "&".join(f"{k}={quote(v)}" for k, v in pairs))


@st.composite
def _request(draw: st.DrawFn) -> tuple[str, str, bytes | None]:
    cid = draw(_path_part)
    route = draw(st.sampled_from([
        ("POST", "/v1/events", "event"), ("POST", "/v1/customers", "customer"),
        ("POST", "/v1/messages", "message"), ("PATCH", "/v1/customers/{c}", "patch"),
        ("POST", "/v1/customers/{c}/identities", "identity"),
        ("POST", "/v1/customers/{c}/merge", "merge"),
        ("PUT", "/v1/customers/{c}/fields/{n}", "field"),
        ("POST", "/v1/conversations/{c}/close", "close"),
        ("GET", "/v1/customers", None), ("GET", "/v1/customers/{c}", None),
        ("GET", "/v1/customers/{c}/timeline", None), ("GET", "/v1/conversations/{c}", None),
        ("GET", "/v1/menus/preview", None),
    ]))  # fmt: skip
    method, path, kind = route
    path = path.format(c=cid, n=draw(_path_part))
    if method == "GET":
        query = draw(_query)
        return method, path + ("?" + query if query else ""), None
    assert kind is not None
    if draw(st.integers(0, 9)) == 0:
        return method, path, draw(st.sampled_from([b"", b"[" * 5000, b"\xff", b"{", b"nul"]))
    return method, path, json.dumps(draw(_mutated(kind))).encode()


# ------------------------------------------------------------------------ checks


def _check_error(status: int, doc: Any) -> None:
    assert status < 500, (status, doc)
    if status < 400:
        return
    assert isinstance(doc, dict) and set(doc) == {"error"}, doc
    error = doc["error"]
    assert isinstance(error["code"], str) and error["code"], doc
    assert isinstance(error["message"], str), doc
    for detail in error.get("details", []):
        assert {"loc", "msg", "type"} <= set(detail), doc


def _run(work: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            timeline = await open_timeline("sqlite:///" + str(Path(tmp) / "t.db"))
            try:
                app = create_api_app(store=timeline.store, lookup=timeline.lookup, menus={})
                async with TestClient(TestServer(app)) as client:
                    await work(client)
            finally:
                await timeline.close()

    asyncio.run(main())


async def _send(
    client: TestClient[Any, Any], method: str, path: str, body: bytes | None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    resp = await client.request(method, path, data=body, headers=headers)
    text = await resp.text()
    return resp.status, json.loads(text) if text else None


_FEW = settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])


@_FEW
@given(st.lists(_request(), min_size=1, max_size=12))
def test_no_request_is_a_500_and_errors_have_one_shape(
    requests: list[tuple[str, str, bytes | None]],
) -> None:
    async def work(client: TestClient[Any, Any]) -> None:
        for method, path, body in requests:
            status, doc = await _send(client, method, path, body)
            _check_error(status, doc)
            if status in (200, 201) and method == "POST" and path in ("/v1/events", "/v1/messages"):
                again_status, again = await _send(client, method, path, body)
                assert again_status == 200, (again_status, again)
                assert again["inserted"] is False
                for key in ("event_id", "customer_id", "message_id", "conversation_id"):
                    assert again.get(key) == doc.get(key), (key, doc, again)

    _run(work)


@_FEW
@given(st.integers(1, 30), st.integers(1, 7), st.booleans())
def test_paging_ends_and_sees_every_event_once(count: int, limit: int, conversation: bool) -> None:
    async def work(client: TestClient[Any, Any]) -> None:
        seen: list[str] = []
        if conversation:
            first = {"message_id": "m0", "channel": "sms", "direction": "inbound", "from": PHONE,
                     "text": "hi"}  # fmt: skip
            status, doc = await _send(client, "POST", "/v1/messages", json.dumps(first).encode())
            assert status == 201, doc
            case = doc["conversation_id"]
            for n in range(1, count):
                body = dict(first, message_id=f"m{n}", conversation_id=case)
                status, _ = await _send(client, "POST", "/v1/messages", json.dumps(body).encode())
                assert status == 201
            after: int | None = None
            for _ in range(count + 2):
                query = f"?limit={limit}" + (f"&after={after}" if after is not None else "")
                status, page = await _send(client, "GET", f"/v1/conversations/{case}{query}", None)
                assert status == 200, page
                assert len(page["events"]) <= limit
                seen += [e["event_id"] for e in page["events"]]
                if page["next_after"] is None:
                    break
                after = page["next_after"]
            else:
                raise AssertionError("conversation paging does not end")
        else:
            customer = None
            for n in range(count):
                body = {"event_id": f"e{n}", "identity": {"kind": "phone", "value": PHONE},
                        "channel": "web", "event_type": "x"}  # fmt: skip
                status, doc = await _send(client, "POST", "/v1/events", json.dumps(body).encode())
                assert status == 201, doc
                customer = doc["customer_id"]
            before: int | None = None
            for _ in range(count + 2):
                query = f"?limit={limit}" + (f"&before={before}" if before is not None else "")
                status, page = await _send(
                    client, "GET", f"/v1/customers/{customer}/timeline{query}", None
                )
                assert status == 200, page
                assert len(page["events"]) <= limit
                seen += [e["event_id"] for e in page["events"]]
                cursor = page.get("next_before")
                if cursor is None:
                    break
                before = cursor
            else:
                raise AssertionError("timeline paging does not end")
        assert len(seen) == len(set(seen)) == count, seen

    _run(work)
