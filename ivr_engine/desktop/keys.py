"""Typed application keys of the desktop sub-app."""

from __future__ import annotations

from aiohttp import web

from ivr_engine.agents import AgentStateStore
from ivr_engine.desktop.assets import Assets
from ivr_engine.desktop.config import DesktopConfig
from ivr_engine.desktop.directory import AgentDirectory
from ivr_engine.desktop.hub import DesktopHub
from ivr_engine.desktop.sessions import SessionStore
from ivr_engine.desktop.throttle import CheckGate, LoginLimits

CONFIG = web.AppKey[DesktopConfig]("desktop_config")
DIRECTORY = web.AppKey[AgentDirectory]("desktop_directory")
AGENTS = web.AppKey[AgentStateStore]("desktop_agents")
HUB = web.AppKey[DesktopHub]("desktop_hub")
SESSIONS = web.AppKey[SessionStore]("desktop_sessions")
THROTTLE = web.AppKey[LoginLimits]("desktop_throttle")
CHECK_GATE = web.AppKey[CheckGate]("desktop_check_gate")
ASSETS = web.AppKey[Assets]("desktop_assets")
