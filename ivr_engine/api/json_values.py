"""JSON values compared and written out as the stores keep them, the same on SQLite and
PostgreSQL.

PostgreSQL's JSONB keeps a number as ``numeric``, the decimal value of its JSON text
without an exponent or a sign on zero: ``1e23`` (the text Python writes for the float)
comes back as the integer ``100000000000000000000000``, ``-0.0`` as ``0.0``, ``1e-07`` as
``0.0000001`` (the float ``1e-07`` again), ``2.0`` as ``2.0``; SQLite keeps the JSON text
of the float (``1e+23``, ``-0.0``). So:

* numbers compare by the decimal value of their JSON text (``1e23`` equals
  ``100000000000000000000000``), never as Python floats against ints; a boolean is never
  equal to a number (``true`` is not ``1``), and object keys are unordered, as in JSON
  (``same_json``);
* the API writes a stored number out in the one form both stores can give back
  (``portable_json``): a whole number of magnitude 1e16 or more as a plain integer, the
  decimal value of the float's shortest text (``1e23`` → ``100000000000000000000000``, not
  the binary double's ``99999999999999991611392``), a negative zero as ``0.0``; every
  other number as stored (``1.5``, ``2.0``, ``1e-07``, integers of any size exactly). 1e16
  is where Python's float text switches to an exponent: below it, a whole float is written
  ``123.0`` and PostgreSQL keeps that text's scale.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

__all__ = ["portable_json", "same_json"]

_EXPONENT_FROM = 1e16  # repr() of a whole float of this magnitude or more has an exponent


def same_json(left: Any, right: Any) -> bool:
    """Whether two parsed JSON values are the same document, as a store keeps it."""
    return _canonical(left) == _canonical(right)


def _canonical(value: Any) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", Decimal(json.dumps(value)))
    if isinstance(value, dict):
        return ("object", frozenset((key, _canonical(v)) for key, v in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(_canonical(v) for v in value))
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def portable_json(value: Any) -> Any:
    """``value`` (a parsed JSON document read from either store) with its numbers in the
    form both stores give back (see the module's docstring); the rest unchanged."""
    if isinstance(value, float):
        if value == 0:
            return 0.0  # PostgreSQL's numeric has no negative zero
        if abs(value) >= _EXPONENT_FROM and value.is_integer():
            return int(Decimal(repr(value)))  # as PostgreSQL keeps the text "1e+23"
        return value
    if isinstance(value, dict):
        return {key: portable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [portable_json(item) for item in value]
    return value
