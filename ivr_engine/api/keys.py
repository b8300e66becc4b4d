"""Typed application keys: everything a handler needs comes from ``request.app[KEY]``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from aiohttp import web

from ivr_engine.domain.models import CountryCodeWithoutPlus, Menu
from ivr_engine.ports import CallerLookup, ConversationReader, TimelineStore

STORE = web.AppKey[TimelineStore]("store")
LOOKUP = web.AppKey[CallerLookup]("lookup")
MENUS = web.AppKey[Mapping[str, Menu]]("menus")
CLOCK = web.AppKey[Callable[[], datetime]]("clock")
DEFAULT_REGION = web.AppKey[str]("default_region")
# How phone identities starting with the region's country code without "+" are read.
COUNTRY_CODE_WITHOUT_PLUS = web.AppKey[CountryCodeWithoutPlus]("country_code_without_plus")
MAX_BODY_BYTES = web.AppKey[int]("max_body_bytes")
BODY_TIMEOUT_S = web.AppKey[float]("body_timeout_s")
CONVERSATIONS = web.AppKey[ConversationReader]("conversations")  # event lookups by id too
