"""The menus in force: one object every holder reads (the call flow, the API's menu preview),
so a reload (SIGHUP, ``Engine.reload_menus``) puts new menus in force for the next call at
once. A call in progress keeps the ``Menu`` it started with."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ivr_engine.domain.models import Menu


class LiveMenus(Mapping[str, Menu]):
    def __init__(self, menus: Mapping[str, Menu] | None = None) -> None:
        self._menus: dict[str, Menu] = dict(menus or {})
        self.version = 1  # +1 on each replace

    def replace(self, menus: Mapping[str, Menu]) -> None:
        """Put ``menus`` (already checked) in force, all at once."""
        self._menus = dict(menus)
        self.version += 1

    def __getitem__(self, name: str) -> Menu:
        return self._menus[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._menus)

    def __len__(self) -> int:
        return len(self._menus)
