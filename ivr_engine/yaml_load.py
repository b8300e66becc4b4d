"""Loading YAML configuration so that every failure is a ``yaml.YAMLError``.

PyYAML's safe constructors raise more than ``YAMLError``: a value shaped like a date that
is not one (``2024-02-30``) or ``!!int x`` raise ``ValueError``, and deeply nested flow
collections ``RecursionError``. Every configuration loader turns ``YAMLError`` into a
``ConfigError`` naming the file; loading through here keeps that true for these too, so
an operator's typo is "file: not valid YAML: ..." and not a traceback.
"""

from __future__ import annotations

from typing import Any

import yaml


class UnbuildableValue(yaml.YAMLError):
    """The YAML parsed, but a value in it could not be built (or nesting was too deep)."""


def load_yaml(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """``yaml.load`` with a safe loader; anything it raises is a ``yaml.YAMLError``."""
    try:
        return yaml.load(text, Loader=loader)
    except (ValueError, RecursionError, OverflowError) as exc:
        raise UnbuildableValue(f"a value cannot be built: {exc}") from exc
