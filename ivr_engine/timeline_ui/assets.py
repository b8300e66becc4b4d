"""The page, its script and its style sheet, read from the package once, when the app is built.

Plain files in ``ivr_engine/timeline_ui/static/`` (no build step). ``index.html`` carries three
placeholders filled here: the API's base path, the page size and whether the API needs a
bearer token, as ``data-`` attributes the script reads. A missing file or placeholder stops
the app from being built rather than serving a broken page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Final, TypeAlias

from ivr_engine.domain.errors import ConfigError

PAGE: Final = "index.html"
FILES: Final = MappingProxyType(
    {
        PAGE: "text/html",
        "timeline.js": "text/javascript",
        "timeline.css": "text/css",
    }
)
API_BASE_SLOT: Final = "{{api_base}}"
PAGE_SIZE_SLOT: Final = "{{page_size}}"
TOKEN_SLOT: Final = "{{token_required}}"
# A path on this origin: "/" or "/segment/.../" ("//host" would leave the origin).
_API_BASE_RE: Final = re.compile(r"^/(?:[A-Za-z0-9._~\-]+/)*$")


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


Assets: TypeAlias = Mapping[str, Asset]


def normalise_api_base(api_base: str) -> str:
    """``"/api"`` → ``"/api/"``; anything but a plain same-origin path is a ``ConfigError``."""
    base = api_base if api_base.endswith("/") else api_base + "/"
    if not _API_BASE_RE.fullmatch(base):
        raise ConfigError(
            f"timeline_ui api_base: {api_base!r} is not a path on this origin; "
            "use '/' (the API at the root) or a prefix such as '/api/'"
        )
    return base


def load_assets(*, api_base: str, page_size: int, token_required: bool = False) -> Assets:
    root = resources.files("ivr_engine.timeline_ui").joinpath("static")
    loaded: dict[str, Asset] = {}
    for name, content_type in FILES.items():
        try:
            body = root.joinpath(name).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"ivr_engine/timeline_ui/static/{name}: cannot read the timeline page asset "
                f"({exc}); is package-data for ivr_engine.timeline_ui installed?"
            ) from None
        loaded[name] = Asset(body, content_type)
    slots = {
        API_BASE_SLOT: html.escape(api_base, quote=True),
        PAGE_SIZE_SLOT: str(page_size),
        TOKEN_SLOT: "true" if token_required else "false",
    }
    page = _fill_page(loaded[PAGE].body.decode("utf-8"), slots)
    loaded[PAGE] = Asset(page.encode("utf-8"), FILES[PAGE])
    return MappingProxyType(loaded)


def _fill_page(page: str, slots: Mapping[str, str]) -> str:
    for slot, value in slots.items():
        if page.count(slot) != 1:
            raise ConfigError(f"ivr_engine/timeline_ui/static/{PAGE}: expected one {slot}")
        page = page.replace(slot, value)
    return page
