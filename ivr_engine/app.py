"""Composition root: builds and wires everything, owns the tasks and the shutdown order."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from crm_bridge.webhooks.relay import WebhookRelay
from ivr_engine.api.app import create_api_app
from ivr_engine.api.auth import LiveTokens
from ivr_engine.checked_menus import load_checked_menus
from ivr_engine.contact_center.load_link import LoadLink
from ivr_engine.contact_center.metrics import CountingSink, load_routes
from ivr_engine.contact_center.reroute import REROUTE_SCRIPT, reroute_handler
from ivr_engine.contact_center.wiring import ContactCenter
from ivr_engine.data_dirs import check_spool_dir
from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import Menu
from ivr_engine.flows.ivr_flow import CallSink, IvrFlow
from ivr_engine.flows.recorder import CallRecorder
from ivr_engine.live_menus import LiveMenus
from ivr_engine.omni.redeem_api import redeem_routes
from ivr_engine.omni.webhook_admin import webhook_admin_routes
from ivr_engine.omni.webhook_feed import open_webhook_relay
from ivr_engine.omni.wiring import Continuation, open_continuation
from ivr_engine.ports import CallerLookup, TimelineStore
from ivr_engine.settings import Settings, is_loopback
from ivr_engine.speech_wiring import Speech, open_speech
from ivr_engine.telephony.agi import FastAgiServer
from ivr_engine.telephony.call_server import CallServer
from ivr_engine.telephony.esl import EslOutboundServer, OutboundLimits
from ivr_engine.telephony.esl.ivr_handler import esl_ivr_handler, esl_reroute_handler
from ivr_engine.telephony.ivr_handler import IVR_SCRIPT, ivr_handler
from ivr_engine.telephony.peers import PeerAllowlist
from ivr_engine.timeline import Timeline, open_timeline
from ivr_engine.timeline.urls import redact
from ivr_engine.timeline_ui import create_timeline_ui_app
from ivr_engine.token_reload import SettingsSource, TokenReload, reload_tokens
from ivr_engine.workers.role import WorkerRole

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def listening(key: str, host: str, port: int) -> Iterator[None]:
    """A port that cannot be bound is a ``ConfigError`` naming its setting (exit code 2, as
    ``ivr-engine run --workers N`` says of the ports it holds)."""
    try:
        yield
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        hint = " (another ivr-engine, or another program, is there)" if taken else ""
        raise ConfigError(f"{key}: cannot listen on {host}:{port}: {exc}{hint}") from exc


@dataclass
class Engine:
    settings: Settings
    menus: LiveMenus = field(default_factory=LiveMenus)
    timeline: Timeline | None = None
    recorder: CallRecorder | None = None
    agi: FastAgiServer | None = None
    esl: EslOutboundServer | None = None
    http: web.AppRunner | None = None
    http_port: int = 0
    contact_center: ContactCenter | None = None
    continuation: Continuation | None = None
    webhooks: WebhookRelay | None = None
    speech: Speech | None = None  # a menu with speech enabled: the recogniser
    # None: the only engine process (everything, as always); else one of several workers
    # sharing the call ports (ivr_engine/workers/role.py: what runs in worker 0 only).
    role: WorkerRole | None = None
    # workers with agents: the socket to the supervisor's load ledger (workers/load_ledger.py)
    load_link_fd: int | None = None
    load_link: LoadLink | None = None
    # The HTTP API's tokens in force (api_tokens, admin_token): a reload replaces them.
    tokens: LiveTokens = field(default_factory=LiveTokens)
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock)
    _grace_ended: bool = False  # ``end_grace``: the stop gives calls no (more) grace

    async def start(self) -> None:
        """Open what calls need, in the order a call uses it; then listen."""
        settings = self.settings
        self.menus = LiveMenus(load_checked_menus(settings))
        check_spool_dir(settings.spool_dir, create=True)
        timeline, recorder = await self._open_timeline(settings)
        await self._open_contact_center(settings, timeline.store)
        if self._leads:
            self.webhooks = await open_webhook_relay(settings)
        self.continuation = open_continuation(settings, self.menus, timeline.store, utc_now)
        self.speech = await open_speech(settings, self.menus)
        flow = self._call_flow(settings, timeline.lookup, recorder)
        allowlist = PeerAllowlist(settings.pbx_allowlist)
        if allowlist.open_to_all and not is_loopback(settings.agi_host):
            log.warning(
                "FastAGI on %s takes calls from any host (pbx_allowlist not set): whoever "
                "reaches the port can play any caller; set pbx_allowlist to your PBXs",
                settings.agi_host,
            )
        agi = await self._start_agi(settings, flow, allowlist)
        if settings.esl_port is not None:
            await self._start_esl(settings, flow, allowlist)
        if self._leads:
            await self._start_http()
        log.info(
            "engine ready: FastAGI %s:%s, HTTP %s, database %s",
            settings.agi_host,
            agi.port,
            f"{settings.http_host}:{self.http_port}" if self._leads else "in worker 0",
            redact(settings.database_url),
        )

    async def _open_timeline(self, settings: Settings) -> tuple[Timeline, CallRecorder]:
        """The timeline (lookup, writer, store) and the recorder that writes calls to it."""
        # workers: the supervisor migrated SQLite once, before starting them
        migrate = False if self.role is not None else None
        self.timeline = timeline = await open_timeline(settings.database_url, migrate=migrate)
        if not await timeline.lookup.warm_up():
            log.warning(
                "timeline %s not reachable at start-up: static menus until it is",
                redact(settings.database_url),
            )
        self.recorder = recorder = CallRecorder(
            timeline.store,
            settings.spool_dir,
            fast=timeline.writer,
            linger_s=settings.call_write_linger_ms / 1000,
            max_line_bytes=settings.spool_max_line_bytes,
        )
        await recorder.start()
        return timeline, recorder

    async def _open_contact_center(self, settings: Settings, store: TimelineStore) -> None:
        """Agents, routing and the load view: only with an agents file."""
        if settings.agents_file is None:
            return
        if self.load_link_fd is not None:
            self.load_link = await LoadLink.open(self.load_link_fd)
        self.contact_center = await ContactCenter.open(
            self._leader_only(settings, ami_url=None),
            self.menus,
            store,
            utc_now,
            load_link=self.load_link,
        )

    def _call_flow(
        self, settings: Settings, lookup: CallerLookup, recorder: CallRecorder
    ) -> IvrFlow:
        center = self.contact_center
        sink: CallSink = recorder
        if center is not None and center.load is not None:
            sink = CountingSink(recorder, center.load)
        return IvrFlow(
            menus=self.menus,
            lookup=lookup,
            sink=sink,
            clock=utc_now,
            decision_deadline_s=settings.decision_deadline_ms / 1000,
            default_region=settings.default_region,
            country_code_without_plus=settings.caller_id_country_code_without_plus,
            router=center.router if center is not None else None,
            continuation=self.continuation.continuer if self.continuation else None,
            continue_deadline_s=settings.continue_sms_deadline_ms / 1000,
            use_withheld_caller_id=settings.use_withheld_caller_id,
            speech=self.speech.listener if self.speech is not None else None,
        )

    async def _start_agi(
        self, settings: Settings, flow: IvrFlow, allowlist: PeerAllowlist
    ) -> FastAgiServer:
        self.agi = agi = FastAgiServer(
            host=settings.agi_host,
            port=settings.agi_port,
            backlog=settings.agi_backlog,
            header_timeout=settings.agi_header_timeout_s,
            command_timeout=settings.agi_command_timeout_s,
        )
        agi.only_from(allowlist)
        agi.register(IVR_SCRIPT, ivr_handler(flow, utc_now))
        if (center := self.contact_center) is not None:
            agi.register(REROUTE_SCRIPT, reroute_handler(center.router, center.agents, utc_now))
        with listening("agi_port", settings.agi_host, settings.agi_port):
            await agi.start(reuse_port=self.role is not None)
        return agi

    async def _start_esl(self, settings: Settings, flow: IvrFlow, allowlist: PeerAllowlist) -> None:
        """The FreeSWITCH outbound socket server (``esl_port`` set)."""
        assert settings.esl_port is not None
        limits = OutboundLimits(command_timeout=settings.agi_command_timeout_s)
        self.esl = EslOutboundServer(
            esl_ivr_handler(flow, utc_now), settings.esl_host, settings.esl_port, limits=limits
        )
        self.esl.only_from(allowlist)
        if (center := self.contact_center) is not None:
            reroute = esl_reroute_handler(center.router, center.agents, utc_now)
            self.esl.register(REROUTE_SCRIPT, reroute)
        with listening("esl_port", settings.esl_host, settings.esl_port):
            await self.esl.start(reuse_port=self.role is not None)
        log.info("FreeSWITCH outbound socket on %s:%s", settings.esl_host, self.esl.port)

    @property
    def _leads(self) -> bool:
        """Runs the once-per-engine parts: always, unless a worker other than worker 0."""
        return self.role is None or self.role.leads

    def _leader_only(self, settings: Settings, **off: object) -> Settings:
        """``settings`` with ``off`` applied in workers other than worker 0."""
        return settings if self._leads else settings.model_copy(update=off)

    async def _start_http(self) -> None:
        assert self.timeline is not None
        settings = self.settings
        self.use_tokens(settings)
        app = create_api_app(
            store=self.timeline.store,
            lookup=self.timeline.lookup,
            menus=self.menus,
            clock=utc_now,
            default_region=settings.default_region,
            country_code_without_plus=settings.caller_id_country_code_without_plus,
            body_timeout_s=settings.http_body_timeout_s,
            allowed_hosts=settings.api_host_names(),
            tokens=self.tokens,
        )
        api_tokens = settings.api_tokens
        ui = create_timeline_ui_app(self.timeline.store, token_required=bool(api_tokens))
        app.add_subapp("/timeline", ui)
        if self.continuation is not None:
            app.add_routes(
                redeem_routes(
                    self.continuation.tokens,
                    self.timeline.store,
                    utc_now,
                    body_timeout_s=settings.http_body_timeout_s,
                )
            )
        if self.webhooks is not None:
            app.add_routes(webhook_admin_routes(self.webhooks.dispatcher, self.tokens))
        if self.contact_center is not None:
            app.add_subapp("/desktop", self.contact_center.desktop_app(self.settings))
            center = self.contact_center
            app.add_routes(center.agents_routes(self.tokens, utc_now))
            if center.load is not None:
                app.add_routes(
                    load_routes(
                        center.load,
                        center.agents,
                        utc_now,
                        extra_metrics=center.metric_families,
                    )
                )
        self.http = web.AppRunner(app, access_log=None)
        await self.http.setup()
        site = web.TCPSite(
            self.http,
            self.settings.http_host,
            self.settings.http_port,
            reuse_port=True if self.role is not None else None,  # the supervisor holds it
        )
        with listening("http_port", settings.http_host, settings.http_port):
            await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.settings.http_port
        if not api_tokens:  # said once the port is ours, not before a refusal to listen
            log.warning(
                "HTTP API on %s has no authentication (api_tokens not set): customer "
                "timelines are readable by anyone who reaches the port",
                settings.http_host,
            )

    async def reload_menus(self) -> Mapping[str, Menu]:
        """Read the menus again and put them in force for the next calls (calls in progress
        keep theirs). They must pass every start-up check (the YAML, the prompts and their
        audio, every intent routed): else ``ConfigError`` and the menus in force stay."""
        async with self._reloading:
            menus = await asyncio.to_thread(load_checked_menus, self.settings)
            if self.contact_center is not None:
                self.contact_center.check_menus(menus)
                self.contact_center.use_menus(menus)
            if self.continuation is not None:
                self.continuation.use_menus(menus)
            self.menus.replace(menus)
        return menus

    async def reload_tokens(self, source: SettingsSource) -> TokenReload:
        """Read ``api_tokens`` and ``admin_token`` again from ``source`` (the settings file
        again; the environment and command line as at start) and put them in force for the
        next request. The settings must pass every start-up check and keep at least one API
        token if the API has some (``token_reload``): else ``ConfigError`` and the tokens in
        force stay."""
        async with self._reloading:
            reload = await asyncio.to_thread(reload_tokens, self.settings, source)
            self.use_tokens(reload.settings)
        return reload

    def use_tokens(self, settings: Settings) -> None:
        """Put the tokens of ``settings`` (already checked) in force, all at once."""
        admin = settings.admin_token
        self.settings = self.settings.model_copy(
            update={"api_tokens": settings.api_tokens, "admin_token": admin}
        )
        self.tokens.replace(
            [token.get_secret_value() for token in settings.api_tokens],
            None if admin is None else admin.get_secret_value(),
        )

    @property
    def active_calls(self) -> int:
        """Calls in progress, FastAGI and ESL."""
        return sum(server.active_calls for server in (self.agi, self.esl) if server is not None)

    def stop_accepting(self) -> None:
        """No new calls from now on (FastAGI, ESL); the ones in progress go on."""
        for server in (self.agi, self.esl):
            if server is not None:
                server.stop_accepting()

    def end_grace(self) -> int:
        """End the stop's grace now (a second SIGTERM or SIGINT): the calls in progress are
        told failed and cancelled at once; the rest of the stop (the recorder writes or
        spools every call, these included) goes on as usual. How many calls were cut."""
        self._grace_ended = True
        for server in (self.agi, self.esl):
            if server is not None:
                server.end_grace()
        return self.active_calls

    async def stop(self) -> None:
        """Stop taking calls, let the ones in flight finish for ``shutdown_grace_s`` (then
        end them as failed: the dialplan's static menu), flush the recorder, close the DB.

        Every part is closed even when an earlier one fails (logged): a part left open (the
        database's threads) would keep the process alive after SIGTERM."""
        calls = self.agi is not None or self.esl is not None
        parts: list[tuple[str, Callable[[], Awaitable[object]] | None]] = [
            ("call servers", self._close_call_servers if calls else None),
            ("HTTP API", self.http.cleanup if self.http else None),
            ("contact centre", self.contact_center.aclose if self.contact_center else None),
            # after the last call's updates
            ("load link", self.load_link.aclose if self.load_link else None),
            ("continuation", self.continuation.aclose if self.continuation else None),
            ("webhooks", self.webhooks.aclose if self.webhooks else None),
            ("speech recogniser", self.speech.aclose if self.speech else None),
            ("call recorder", self.recorder.close if self.recorder else None),
            ("timeline", self.timeline.close if self.timeline else None),
        ]
        for name, close in parts:
            if close is None:
                continue
            try:
                await close()
            except Exception:
                log.exception("stopping the %s failed; stopping the rest", name)

    async def _close_call_servers(self) -> None:
        """FastAGI and ESL drained together, under one ``shutdown_grace_s``: one after the
        other, the ESL calls had a second grace once the FastAGI one had run out (the stop
        then outlasted the supervisor's ``shutdown_grace_s + STOP_MARGIN_S``)."""
        grace = 0.0 if self._grace_ended else self.settings.shutdown_grace_s
        pairs: tuple[tuple[str, CallServer | None], ...] = (
            ("FastAGI server", self.agi),
            ("ESL server", self.esl),
        )
        servers = [(name, server) for name, server in pairs if server is not None]
        results = await asyncio.gather(
            *(server.close(grace) for _, server in servers), return_exceptions=True
        )
        for (name, _), result in zip(servers, results, strict=True):
            if isinstance(result, Exception):
                log.error("stopping the %s failed; stopping the rest", name, exc_info=result)
            elif isinstance(result, BaseException):
                raise result
