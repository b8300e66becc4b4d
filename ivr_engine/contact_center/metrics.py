"""The load over HTTP: ``GET <prefix>/load`` (JSON), ``GET /metrics`` (Prometheus text), and
the supervisor page ``GET <prefix>/load.html`` + ``<prefix>/load.js``.

``load_routes`` returns a ``RouteTableDef`` to add to the main API app. The page uses
relative URLs (``load.js``, ``load``), so it works under any prefix. The live agent state
is read once per request, bounded by ``store_timeout_s``; when it cannot be read the
answer still comes (fail open): call counts as usual, agent counts zero and
``agent_state_available`` false (``ivr_agent_state_up 0`` in the scrape).

With several engine workers the load comes from the supervisor's ledger (every worker's
calls, ``linked_load.py``); if it does not answer, both routes answer 503. Every family is
then engine-wide, as one process would report it, except ``ivr_load_updates_dropped_total``
(per process by nature: labelled ``worker``, and only there with workers).

The Prometheus text exposition format (version 0.0.4) is written here by hand: one
``# HELP`` and one ``# TYPE`` line per family, then its samples; label values escape ``\\``,
``"`` and newline, HELP text escapes ``\\`` and newline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Final, Literal, Protocol

from aiohttp import web

from ivr_engine.agents.errors import AgentStateError
from ivr_engine.agents.model import AgentSnapshot
from ivr_engine.api.errors import error_response
from ivr_engine.contact_center.load_tracker import LoadTracker, LoadUnavailable
from ivr_engine.contact_center.load_view import LoadSnapshot
from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import CallOutcome
from ivr_engine.flows.call_record import CallRecord

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_FILES: Final = {"load.html": "text/html", "load.js": "text/javascript"}
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

MetricKind = Literal["gauge", "counter"]
Labels = Mapping[str, str]


class LiveAgents(Protocol):
    """The one thing the load routes need from ``AgentStateStore``."""

    async def snapshot(self, *, now: datetime | None = None) -> Mapping[str, AgentSnapshot]: ...


class CallSink(Protocol):
    def submit(self, record: CallRecord) -> None: ...


class CountingSink:
    """Wraps the IVR's call sink: counts each finished call's outcome; a call that did not
    leave the IVR routed (abandoned, failed) is waited on no more."""

    def __init__(self, inner: CallSink, tracker: LoadTracker) -> None:
        self._inner = inner
        self._tracker = tracker

    def submit(self, record: CallRecord) -> None:
        self._tracker.count_call(record.outcome)
        if record.outcome is not CallOutcome.ROUTED:
            self._tracker.call_ended(record.call.call_id)
        self._inner.submit(record)


# --------------------------------------------------------------------------- exposition


@dataclass(frozen=True, slots=True)
class MetricFamily:
    name: str  # counters end in ``_total``
    kind: MetricKind
    help: str
    samples: Sequence[tuple[Labels, float]]


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def format_family(family: MetricFamily) -> str:
    if not _NAME.fullmatch(family.name):
        raise ValueError(f"invalid metric name {family.name!r}")
    lines = [
        f"# HELP {family.name} {escape_help(family.help)}",
        f"# TYPE {family.name} {family.kind}",
    ]
    for labels, value in family.samples:
        lines.append(f"{family.name}{_format_labels(labels)} {format_value(value)}")
    return "\n".join(lines) + "\n"


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    for name in labels:
        if not _LABEL.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"invalid label name {name!r}")
    pairs = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels.items())
    return "{" + pairs + "}"


def load_families(load: LoadSnapshot) -> list[MetricFamily]:
    skills = load["skills"]
    up = 1.0 if load["agent_state_available"] else 0.0
    counters = load["counters"]
    return [
        MetricFamily(
            "ivr_calls_waiting",
            "gauge",
            "Calls waiting for an agent with this skill (in the overflow queue or ringing).",
            [({"skill": s["skill"]}, s["waiting"]) for s in skills],
        ),
        MetricFamily(
            "ivr_calls_ringing",
            "gauge",
            "Calls ringing an agent, by skill.",
            [({"skill": s["skill"]}, s["ringing"]) for s in skills],
        ),
        MetricFamily(
            "ivr_longest_wait_seconds",
            "gauge",
            "Longest current wait of a call needing this skill (0 when nobody waits).",
            [({"skill": s["skill"]}, s["longest_wait_s"]) for s in skills],
        ),
        MetricFamily(
            "ivr_agents",
            "gauge",
            "Agents per live state.",
            [({"state": state}, n) for state, n in load["agents"].items()],
        ),
        MetricFamily(
            "ivr_team_agents",
            "gauge",
            "Agents per team and live state.",
            [
                ({"team": t["team"], "state": state}, n)
                for t in load["teams"]
                for state, n in t["agents"].items()
            ],
        ),
        MetricFamily(
            "ivr_agent_state_up",
            "gauge",
            "1 when the live agent state could be read for this scrape, else 0.",
            [({}, up)],
        ),
        MetricFamily(
            "ivr_calls_total",
            "counter",
            "Calls that left the IVR, by outcome.",
            [({"outcome": o}, n) for o, n in counters["calls"].items()],
        ),
        MetricFamily(
            "ivr_route_decisions_total",
            "counter",
            "Routing decisions (reroutes included): an agent, or the overflow target.",
            [({"kind": k}, n) for k, n in counters["route_decisions"].items()],
        ),
        MetricFamily(
            "ivr_load_calls_forgotten_total",
            "counter",
            "Waiting calls dropped because their end was never seen (stale, or over the cap).",
            [({}, counters["forgotten_calls"])],
        ),
    ]


def pops_lost_family(count: int) -> MetricFamily:
    return MetricFamily(
        "ivr_desktop_pops_lost_total",
        "counter",
        "Screen pops that could not be relayed to the other engine processes",
        [({}, count)],
    )


def updates_dropped_family(dropped: Mapping[int, int]) -> MetricFamily:
    """Per worker (``--workers``): load updates it dropped, the supervisor not reading."""
    return MetricFamily(
        "ivr_load_updates_dropped_total",
        "counter",
        "Load updates a worker dropped because the supervisor's load ledger was not reading.",
        [({"worker": str(index)}, n) for index, n in sorted(dropped.items())],
    )


def render_metrics(load: LoadSnapshot, extra: Sequence[MetricFamily] = ()) -> str:
    """The whole scrape: one family after the other, ending in a newline."""
    return "".join(format_family(family) for family in [*load_families(load), *extra])


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True, slots=True)
class _Page:
    body: bytes
    content_type: str


def _read_page_files() -> dict[str, _Page]:
    root = resources.files("ivr_engine.desktop").joinpath("static")
    pages = {}
    for name, content_type in _PAGE_FILES.items():
        try:
            pages[name] = _Page(root.joinpath(name).read_bytes(), content_type)
        except OSError as exc:
            raise ConfigError(
                f"ivr_engine/desktop/static/{name}: cannot read the load page ({exc}); "
                "is package-data for ivr_engine.desktop installed?"
            ) from None
    return pages


async def read_load(
    tracker: LoadTracker, agents: LiveAgents, now: datetime, timeout_s: float
) -> LoadSnapshot:
    """The tracker's calls with one read of the live agent state (fails open);
    ``LoadUnavailable`` if the calls cannot be read (workers: the ledger did not answer)."""
    try:
        async with asyncio.timeout(timeout_s):
            live = await agents.snapshot(now=now)
    except (TimeoutError, AgentStateError) as exc:
        log.warning("load view: agent state unavailable (%r); agent counts left out", exc)
        return await tracker.read_snapshot({}, now, agent_state_available=False)
    return await tracker.read_snapshot(live, now)


def load_routes(
    tracker: LoadTracker,
    agents: LiveAgents,
    clock: Callable[[], datetime],
    *,
    prefix: str = "/v1",
    metrics_path: str = "/metrics",
    store_timeout_s: float = 0.5,
    extra_metrics: Callable[[], Sequence[MetricFamily]] = lambda: (),
) -> web.RouteTableDef:
    """``GET {prefix}/load``, ``{prefix}/load.html``, ``{prefix}/load.js``, ``{metrics_path}``."""
    pages = _read_page_files()
    routes = web.RouteTableDef()

    @routes.get(f"{prefix}/load")
    async def load_json(_request: web.Request) -> web.Response:
        try:
            load = await read_load(tracker, agents, clock(), store_timeout_s)
        except LoadUnavailable as exc:
            return _unavailable(exc)
        return web.json_response(load, headers={"Cache-Control": "no-store"})

    @routes.get(metrics_path)
    async def metrics(_request: web.Request) -> web.Response:
        try:
            load = await read_load(tracker, agents, clock(), store_timeout_s)
        except LoadUnavailable as exc:
            return _unavailable(exc)
        body = render_metrics(load, extra_metrics()).encode("utf-8")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def serve(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        page = pages[name]

        async def handler(_request: web.Request) -> web.Response:
            return web.Response(
                body=page.body,
                content_type=page.content_type,
                charset="utf-8",
                headers={
                    "Content-Security-Policy": PAGE_CSP,
                    "X-Content-Type-Options": "nosniff",
                    "Cache-Control": "no-store",
                },
            )

        return handler

    for name in _PAGE_FILES:
        routes.get(f"{prefix}/{name}")(serve(name))
    return routes


def _unavailable(exc: LoadUnavailable) -> web.Response:
    log.warning("load view unavailable: %s", exc)
    return error_response(503, "load_unavailable", str(exc))
