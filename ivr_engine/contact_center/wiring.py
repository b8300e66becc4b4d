"""Builds the contact centre from settings: roster, live state, router, desktop, AMI tracker.

Everything is validated before the engine takes a call: the routing file must route every
menu intent, every agent's profile must parse, the agent state store must be reachable
(every agent is registered in it at start-up).

The agents come from the shared roster table (``LiveRoster``): the agents file seeds it
once, then agents are managed over ``/v1/agents`` without a restart; the router, the
desktop login directory and the load view all read the live roster.

With several engine workers (``load_link``: the channel the supervisor passed down) the
load tracker is a ``LinkedLoadTracker``: the calls and counters of every worker are kept
once, by the supervisor, and ``/metrics`` reports engine-wide figures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiohttp import web

from ivr_engine.agents import AgentStateStore, open_agent_state_store, sweep_reservations
from ivr_engine.api.auth import LiveTokens
from ivr_engine.contact_center.agent_record import records_from_file
from ivr_engine.contact_center.agents_api import agents_routes
from ivr_engine.contact_center.agents_file import load_agent_profiles
from ivr_engine.contact_center.device_tracker import DeviceStateTracker, start_device_tracker
from ivr_engine.contact_center.linked_load import LinkedLoadTracker, load_tracker_for
from ivr_engine.contact_center.live_roster import LiveRoster
from ivr_engine.contact_center.load_link import DROPPED, LoadLink
from ivr_engine.contact_center.load_tracker import LoadTracker
from ivr_engine.contact_center.metrics import (
    MetricFamily,
    pops_lost_family,
    updates_dropped_family,
)
from ivr_engine.contact_center.roster_store import SqlRosterStore
from ivr_engine.contact_center.router import AgentRouter
from ivr_engine.contact_center.tracker import AgentCallTracker
from ivr_engine.desktop import (
    AgentDirectory,
    DesktopConfig,
    DesktopHub,
    SharedDesktop,
    create_desktop_app,
    intent_labels_from_menus,
    load_agent_directory,
    masking_from_menus,
    open_shared_desktop,
)
from ivr_engine.domain.models import Menu
from ivr_engine.ports import TimelineStore
from ivr_engine.routing import (
    Agent,
    RoutingConfig,
    build_roster,
    check_intents_routed,
    load_routing_config,
)
from ivr_engine.settings import Settings, parse_ami_url
from ivr_engine.stopping import cancel_and_wait
from ivr_engine.telephony.ami import AmiClient
from ivr_engine.telephony.peers import parse_networks

log = logging.getLogger(__name__)


@dataclass
class ContactCenter:
    agents: AgentStateStore
    directory: AgentDirectory
    hub: DesktopHub
    router: AgentRouter
    roster: LiveRoster
    shared_desktop: SharedDesktop
    routing: RoutingConfig
    routing_file: Path | str
    ami: AmiClient | None = None
    tracker: AgentCallTracker | None = None
    device_tracker: DeviceStateTracker | None = None
    load: LoadTracker | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def profiles(self) -> list[Agent]:
        """The routing profiles of the live roster, now."""
        return self.roster.profiles()

    @classmethod
    async def open(
        cls,
        settings: Settings,
        menus: Mapping[str, Menu],
        timeline: TimelineStore,
        clock: Callable[[], datetime],
        load_link: LoadLink | None = None,
    ) -> ContactCenter:
        assert settings.agents_file is not None
        config = load_routing_config(settings.routing_file)
        check_intents_routed(config, intents_of(menus), settings.routing_file)
        profiles = load_agent_profiles(settings.agents_file, config)
        directory = load_agent_directory(settings.agents_file)
        agents = open_agent_state_store(settings.agent_state_url)
        load = load_tracker_for(config, build_roster(profiles), load_link, clock)
        roster = LiveRoster(
            SqlRosterStore(settings.database_url),
            config=config,
            agents=agents,
            directory=directory,
            load=load,
        )
        await roster.start(records_from_file(profiles, directory))
        # after the roster: an unreachable Redis is refused as agent state first
        shared_desktop = await open_shared_desktop(
            settings.agent_state_url, desktop_config(settings)
        )
        hub = DesktopHub(
            timeline,
            relay=shared_desktop.relay,
            masking=masking_from_menus(menus.values()),
            intent_labels=intent_labels_from_menus(menus.values()),
        )
        if load_link is not None:
            load_link.watch("pops_lost", lambda: hub.pops_lost)
        router = AgentRouter(
            roster=roster.routing,
            load=load,
            config=config,
            agents=agents,
            timeline=timeline,
            hub=hub,
            clock=clock,
            ring_timeout_s=settings.ring_timeout_s,
            ring_expiry_s=settings.ring_expiry_s,
        )
        center = cls(
            agents=agents,
            directory=directory,
            hub=hub,
            router=router,
            roster=roster,
            shared_desktop=shared_desktop,
            routing=config,
            routing_file=settings.routing_file,
            load=load,
        )
        center._tasks.append(asyncio.create_task(sweep_reservations(agents), name="sweeper"))
        if settings.ami_url is None:
            log.warning(
                "agents are routed but ami_url is not set: nothing sees an agent answer or hang"
                " up, so an agent who answered is offered calls again %.0f s after the ring"
                " (ring_expiry_s); set ami_url",
                router.ring_expiry_s,
            )
        else:
            host, port, user, secret = parse_ami_url(settings.ami_url)
            center.ami = AmiClient(host, port, user, secret)
            await center.ami.start()
            center.tracker = AgentCallTracker(
                center.ami,
                agents,
                timeline,
                clock=clock,
                auto_wrap_up_s=settings.auto_wrap_up_s,
                load=load,
                record_on_timeline=settings.agent_events_on_timeline,
            )
            center.tracker.start()
            center.device_tracker = start_device_tracker(
                center.ami, agents, settings.agent_state_url, lambda: center.profiles
            )
        return center

    def check_menus(self, menus: Mapping[str, Menu]) -> None:
        """The start-up check of menus against the contact centre: every intent routed."""
        check_intents_routed(self.routing, intents_of(menus), self.routing_file)

    def use_menus(self, menus: Mapping[str, Menu]) -> None:
        """Screen pops mask and label by the menus now in force."""
        self.hub.use_menus(
            masking_from_menus(menus.values()), intent_labels_from_menus(menus.values())
        )

    def desktop_app(self, settings: Settings) -> web.Application:
        return create_desktop_app(
            directory=self.directory,
            agents=self.agents,
            hub=self.hub,
            sessions=self.shared_desktop.sessions,
            limits=self.shared_desktop.limits,  # in Redis with the sessions, when they are
            config=desktop_config(settings),
        )

    def agents_routes(self, tokens: LiveTokens, clock: Callable[[], datetime]) -> web.RouteTableDef:
        """``/v1/agents``: the roster (read) and agent management (with the ``admin_token``
        in force)."""
        return agents_routes(
            self.roster,
            self.agents,
            clock,
            admin_token=tokens,
            pause_notes=lambda: None if self.device_tracker is None else self.device_tracker.notes,
        )

    def metric_families(self) -> list[MetricFamily]:
        """Counters beyond the load view, for ``/metrics``: this process's, or with workers
        every worker's as of the load just read (``LinkedLoadTracker.read_snapshot``)."""
        load = self.load
        if not isinstance(load, LinkedLoadTracker):
            return [pops_lost_family(self.hub.pops_lost)]
        dropped = {index: named.get(DROPPED, 0) for index, named in load.workers.items()}
        return [pops_lost_family(load.engine_total("pops_lost")), updates_dropped_family(dropped)]

    async def aclose(self) -> None:
        if self.tracker is not None:
            await self.tracker.aclose()
        if self.device_tracker is not None:
            await self.device_tracker.aclose()
        if self.ami is not None:
            await self.ami.close()
        await self.router.aclose()
        await self.roster.aclose()
        await cancel_and_wait(self._tasks)
        await self.shared_desktop.aclose()
        await self.agents.aclose()


def desktop_config(settings: Settings) -> DesktopConfig:
    """The desktop's settings: one for its app and what it shares (sessions, login limits)."""
    return DesktopConfig(
        allowed_origins=frozenset(settings.desktop_allowed_origins),
        secure_cookie=settings.desktop_secure_cookie,
        trusted_proxies=parse_networks(settings.desktop_trusted_proxies),
        body_timeout_s=settings.http_body_timeout_s,
    )


def intents_of(menus: Mapping[str, Menu]) -> set[str]:
    """Every intent the menus offer (each must be routed when agents are on)."""
    return {option.intent for menu in menus.values() for option in menu.options}
