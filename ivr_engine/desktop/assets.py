"""The desktop page and its script and style sheet, read from the package once, at start-up.

Plain files (no build step, nothing from a CDN) in ``ivr_engine/desktop/static/``; a missing
file stops the app from being built rather than serving a broken page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Final, TypeAlias

from ivr_engine.domain.errors import ConfigError

FILES: Final = MappingProxyType(
    {
        "index.html": "text/html",
        "desktop.js": "text/javascript",
        "desktop.css": "text/css",
    }
)


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


Assets: TypeAlias = Mapping[str, Asset]


def load_assets() -> Assets:
    root = resources.files("ivr_engine.desktop").joinpath("static")
    loaded: dict[str, Asset] = {}
    for name, content_type in FILES.items():
        try:
            loaded[name] = Asset(root.joinpath(name).read_bytes(), content_type)
        except OSError as exc:
            raise ConfigError(
                f"ivr_engine/desktop/static/{name}: cannot read the desktop asset ({exc}); "
                "is package-data for ivr_engine.desktop installed?"
            ) from None
    return MappingProxyType(loaded)
