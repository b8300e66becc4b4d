"""Loading YAML configuration so that every failure is a ``yaml.YAMLError``.

PyYAML's safe constructors raise more than ``YAMLError``: a value shaped like a date that
is not one (``2024-02-30``) or ``!!int x`` raise ``ValueError``, and deeply nested flow
collections ``RecursionError``. Every configuration loader turns ``YAMLError`` into a
``ConfigError`` naming the file; loading through here keeps that true for these too, so
an operator's typo is "file: not valid YAML: ..." and not a traceback.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

# A quoted piece of the file in a YAML message (an alias, a tag, a value that could not be
# built) that may be part of a secret: 8 characters or more without a space (tokens are 32
# or more, and have none).
_QUOTED = re.compile(r"'[^'\s]{8,}'|\"[^\"\s]{8,}\"")


class UnbuildableValue(yaml.YAMLError):
    """The YAML parsed, but a value in it could not be built (or nesting was too deep)."""


def load_yaml(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """``yaml.load`` with a safe loader; anything it raises is a ``yaml.YAMLError``."""
    try:
        return yaml.load(text, Loader=loader)
    except (ValueError, RecursionError, OverflowError) as exc:
        raise UnbuildableValue(f"a value cannot be built: {exc}") from exc


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """What is wrong and where (line, column), without the copy of the line PyYAML adds to
    its message nor a quoted piece of 8 characters or more: a settings file holds secrets
    (``api_tokens``, ``admin_token``, passwords in URLs) and this goes to logs."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return _QUOTED.sub("'...'", str(exc))
    parts = []
    for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if text is None:
            continue
        where = "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"
        parts.append(_QUOTED.sub("'...'", text) + where)
    return "; ".join(parts) or type(exc).__name__
