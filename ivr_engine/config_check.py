"""``ivr-engine check-config``: every start-up check that needs no server, in one place.

What ``ivr-engine run`` (and ``bridge``) would refuse at start, short of connecting to the
database, Redis, Asterisk or FreeSWITCH: the settings (already validated when loaded), the
menus and their prompts, the agents file and the routing file (every intent routed), the
webhook subscriptions, the continuation secret and the agent state URL (the AMI and ESL
URLs are checked with the settings).
Each problem is a ``ConfigError`` naming the file or setting, as at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ivr_engine.settings import Settings


def check_offline(settings: Settings, dialplans: Sequence[Path] = ()) -> list[str]:
    """Run the checks; one summary line per part checked (``ConfigError`` on a problem).
    ``dialplans``: Asterisk or FreeSWITCH dialplan files whose generated static fallback
    menu must still match the menu YAML (``check-config --dialplan``)."""
    from ivr_engine.checked_menus import load_checked_menus
    from ivr_engine.data_dirs import check_spool_dir
    from ivr_engine.fallback_drift import check_fallback_dialplan
    from ivr_engine.menu_config import load_menu_files

    menus = load_checked_menus(settings)
    done = [f"ok: {len(menus)} menu(s): {', '.join(sorted(menus))}"]
    if dialplans:
        files = load_menu_files(settings.menus_dir)
        done += [check_fallback_dialplan(path, files) for path in dialplans]
    check_spool_dir(settings.spool_dir, create=False)
    done.append(f"ok: spool_dir {settings.spool_dir}")
    if settings.agents_file is not None:
        from ivr_engine.agents import check_agent_state_url
        from ivr_engine.contact_center.agents_file import load_agent_profiles
        from ivr_engine.contact_center.wiring import intents_of
        from ivr_engine.desktop.directory import load_agent_directory
        from ivr_engine.routing.config import check_intents_routed, load_routing_config

        routing = load_routing_config(settings.routing_file)
        check_intents_routed(routing, intents_of(menus), settings.routing_file)
        profiles = load_agent_profiles(settings.agents_file, routing)
        load_agent_directory(settings.agents_file)
        check_agent_state_url(settings.agent_state_url)
        done.append(f"ok: {len(profiles)} agent(s), routing {settings.routing_file}")
    if settings.webhooks_file is not None:
        from crm_bridge.webhooks.subscriptions import load_subscriptions

        load_subscriptions(settings.webhooks_file)
        done.append(f"ok: webhook subscriptions {settings.webhooks_file}")
    if settings.continuation_secret is not None:
        from ivr_engine.omni.wiring import continuation_key

        continuation_key(settings.continuation_secret)
        done.append("ok: continuation_secret")
    return done
