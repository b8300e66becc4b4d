"""JSON values compared as the stores keep them, the same on SQLite and PostgreSQL.

PostgreSQL's JSONB keeps a number as ``numeric``: ``1e23`` comes back as the integer
``10**23`` and ``2.0`` as ``2.0`` or ``2``, while SQLite keeps the JSON text of the
float. So numbers compare by the decimal value of their JSON text (``1e23`` equals
``100000000000000000000000``), never as Python floats against ints; a boolean is never
equal to a number (``true`` is not ``1``), and object keys are unordered, as in JSON.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

__all__ = ["same_json"]


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
