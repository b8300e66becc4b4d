"""Which of an option's required fields are already known, and which must be asked. Pure.

A field known from any channel is prefilled and not asked again, if the value is one the
IVR could have collected for it (``FieldSpec.accepts``: the digits, the length); a value
that does not fit (stored before the API checked it, or before the menu's rule changed) is
asked again. Caller ID can be spoofed, and an account number keyed in is no secret: a
sensitive field (``FieldSpec.sensitive``, e.g. the postcode that checks who is calling) is
prefilled only for a verified caller, and asked of anyone else even when it is known, so
identifying a customer never skips their check (the answer is compared with the known
value: ``verification.check_known_answer``). Every prefilled value may be read back or
shown (``FieldPlan.readable``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import FieldPlan, FieldSpec, KnownField, MenuOption
from ivr_engine.personalize._time import ago, as_utc


def plan_fields(
    option: MenuOption,
    specs: Mapping[str, FieldSpec],
    known: Mapping[str, KnownField],
    *,
    caller_verified: bool,
    now: datetime | None = None,
) -> FieldPlan:
    """Plan the option's required fields in the option's order.

    ``now`` only shapes the reason text ("known from chat 3 days ago"); without it the
    reason names the date the value was last updated. Raises ``ConfigError`` when a
    required field has no spec.
    """
    prefilled: dict[str, KnownField] = {}
    to_ask: list[FieldSpec] = []
    reasons: list[str] = []
    readable: set[str] = set()
    for name in dict.fromkeys(option.required_fields):
        spec = _spec(option, specs, name)
        field = known.get(name)
        if field is None or not field.value.strip():
            to_ask.append(spec)
            reasons.append(f"{name}: unknown, will ask")
            continue
        if not spec.accepts(field.value):
            to_ask.append(spec)
            reasons.append(
                f"{name}: the known value is not {spec.length_rule} digits, will ask again"
            )
            continue
        if spec.sensitive and not caller_verified:
            to_ask.append(spec)
            known_from = _known_from(field, now)
            reasons.append(f"{name}: {known_from}, sensitive: asked, caller not verified")
            continue
        prefilled[name] = field
        readable.add(name)
        reasons.append(f"{name}: {_known_from(field, now)}, not asked")
    return FieldPlan(option.intent, prefilled, tuple(to_ask), tuple(reasons), frozenset(readable))


def _spec(option: MenuOption, specs: Mapping[str, FieldSpec], name: str) -> FieldSpec:
    spec = specs.get(name)
    if spec is None:
        raise ConfigError(
            f"option {option.intent!r} requires field {name!r}, but no field spec defines it "
            f"(add {name!r} under fields:)"
        )
    return spec


def _known_from(field: KnownField, now: datetime | None) -> str:
    when = ago(field.updated_at, now) if now is not None else f"on {_date(field.updated_at)}"
    return f"known from {field.source_channel} {when}"


def _date(moment: datetime) -> str:
    return as_utc(moment).date().isoformat()
