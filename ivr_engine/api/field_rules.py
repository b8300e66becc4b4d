"""Known-field values against the menus' field specs: only values the IVR itself would take.

A field that a menu in force declares (``fields:`` in its YAML, e.g. ``postcode``: 4..8
digits) is prefilled for callers instead of being asked, so the API refuses a value the
caller could not have keyed in: only the digits 0-9, ``min_digits`` to ``max_digits`` long,
in every menu that declares the field. Fields that no menu declares stay free text. The
specs are read from ``app[MENUS]`` at each request (the engine's ``LiveMenus``), so a menu
reload changes the rule at once. The value is never echoed (a spec may be ``sensitive``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ivr_engine.api.errors import bad_request
from ivr_engine.domain.models import Menu


def field_spec_problem(menus: Mapping[str, Menu], name: str, value: str) -> str | None:
    """Why ``value`` breaks the spec of field ``name`` in some menu (None: it fits all)."""
    for menu_name in sorted(menus):
        spec = menus[menu_name].fields.get(name)
        if spec is not None and not spec.accepts(value):
            return (
                f"{name} must be {spec.length_rule} digits (0-9), as menu {menu_name!r} "
                f"collects it (fields.{name})"
            )
    return None


def check_field_values(menus: Mapping[str, Menu], fields: Mapping[str, str], loc: str) -> None:
    """400 naming ``loc.<field>`` for the first value that breaks a menu's field spec."""
    for name, value in fields.items():
        problem = field_spec_problem(menus, name, value)
        if problem is not None:
            raise bad_request(f"{loc}.{name}", problem)


def check_field_value(menus: Mapping[str, Menu], name: str, value: str) -> None:
    """400 naming ``value`` when the one field ``name`` breaks a menu's field spec."""
    problem = field_spec_problem(menus, name, value)
    if problem is not None:
        raise bad_request("value", problem)
