"""The agent desktop: log in, state buttons, and a screen pop when the phone rings.

An aiohttp sub-app (``create_desktop_app``) serving one plain HTML page (vanilla JS, no
build step) and a WebSocket; ``DesktopHub.pop(agent_id, ring)`` is what routing calls when
an agent's phone rings. ``build_screen_pop`` is the pure core (masking included).
"""

from __future__ import annotations

from ivr_engine.desktop.app import create_desktop_app
from ivr_engine.desktop.config import DesktopConfig
from ivr_engine.desktop.directory import (
    AgentDirectory,
    DesktopAgent,
    load_agent_directory,
    parse_agent_directory,
)
from ivr_engine.desktop.hub import DesktopHub
from ivr_engine.desktop.passwords import hash_password, new_api_token, verify_password
from ivr_engine.desktop.pop import (
    MASK,
    FieldMasking,
    Ring,
    ScreenPopJson,
    build_screen_pop,
    intent_labels_from_menus,
    masking_from_menus,
    ring_from_call,
)
from ivr_engine.desktop.shared import SharedDesktop, open_shared_desktop

__all__ = [
    "MASK",
    "AgentDirectory",
    "DesktopAgent",
    "DesktopConfig",
    "DesktopHub",
    "FieldMasking",
    "Ring",
    "ScreenPopJson",
    "SharedDesktop",
    "build_screen_pop",
    "create_desktop_app",
    "hash_password",
    "intent_labels_from_menus",
    "load_agent_directory",
    "masking_from_menus",
    "new_api_token",
    "open_shared_desktop",
    "parse_agent_directory",
    "ring_from_call",
    "verify_password",
]
