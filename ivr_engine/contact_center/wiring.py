"""Builds the contact centre from settings: roster, live state, router, desktop, AMI tracker.

Everything is validated before the engine takes a call: the routing file must route every
menu intent, every agent's profile must parse, the agent state store must be reachable
(every agent is registered in it at start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from ivr_engine.agents import AgentStateStore, open_agent_state_store, sweep_reservations
from ivr_engine.contact_center.agents_file import load_agent_profiles
from ivr_engine.contact_center.load_view import LoadTracker
from ivr_engine.contact_center.router import AgentRouter
from ivr_engine.contact_center.tracker import AgentCallTracker
from ivr_engine.desktop import (
    AgentDirectory,
    DesktopConfig,
    DesktopHub,
    create_desktop_app,
    intent_labels_from_menus,
    load_agent_directory,
    masking_from_menus,
)
from ivr_engine.domain.models import Menu
from ivr_engine.ports import TimelineStore
from ivr_engine.routing import Agent, build_roster, check_intents_routed, load_routing_config
from ivr_engine.settings import Settings, parse_ami_url
from ivr_engine.telephony.ami import AmiClient


@dataclass
class ContactCenter:
    agents: AgentStateStore
    directory: AgentDirectory
    hub: DesktopHub
    router: AgentRouter
    ami: AmiClient | None = None
    tracker: AgentCallTracker | None = None
    load: LoadTracker | None = None
    profiles: list[Agent] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        menus: Mapping[str, Menu],
        timeline: TimelineStore,
        clock: Callable[[], datetime],
    ) -> ContactCenter:
        assert settings.agents_file is not None
        config = load_routing_config(settings.routing_file)
        intents = {option.intent for menu in menus.values() for option in menu.options}
        check_intents_routed(config, intents, settings.routing_file)
        profiles = load_agent_profiles(settings.agents_file, config)
        directory = load_agent_directory(settings.agents_file)
        agents = open_agent_state_store(settings.agent_state_url)
        for profile in profiles:
            await agents.register_agent(profile.agent_id, max_concurrent=profile.max_concurrent)
        hub = DesktopHub(
            timeline,
            masking=masking_from_menus(menus.values()),
            intent_labels=intent_labels_from_menus(menus.values()),
        )
        roster = build_roster(profiles)
        load = LoadTracker.from_config(config, roster)
        router = AgentRouter(
            roster=roster,
            load=load,
            config=config,
            agents=agents,
            timeline=timeline,
            hub=hub,
            clock=clock,
            ring_timeout_s=settings.ring_timeout_s,
        )
        center = cls(
            agents=agents,
            directory=directory,
            hub=hub,
            router=router,
            load=load,
            profiles=profiles,
        )
        center._tasks.append(asyncio.create_task(sweep_reservations(agents), name="sweeper"))
        if settings.ami_url is not None:
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
            )
            center.tracker.start()
        return center

    def desktop_app(self, settings: Settings) -> web.Application:
        return create_desktop_app(
            directory=self.directory,
            agents=self.agents,
            hub=self.hub,
            config=DesktopConfig(
                allowed_origins=frozenset(settings.desktop_allowed_origins),
                secure_cookie=settings.desktop_secure_cookie,
            ),
        )

    async def aclose(self) -> None:
        if self.tracker is not None:
            await self.tracker.aclose()
        if self.ami is not None:
            await self.ami.close()
        await self.router.aclose()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.agents.aclose()
