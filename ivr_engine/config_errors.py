"""Configuration files' problems, said one way by every loader: ``file: key: problem``.

``key`` is where the problem is, written as the file writes it: ``options[3].label``; a key
that is not a plain name is quoted (``skills.'two words'``); the document itself is
``<top>``. Every problem found is listed, one per line, not only the first. Messages never
quote the value at fault (a configuration file holds secrets and password hashes) unless a
loader's own ``message`` chooses to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ivr_engine.domain.errors import ConfigError
from ivr_engine.yaml_load import describe_yaml_error, load_yaml

TOP = "<top>"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-:]+")

Message = Callable[[ErrorDetails], str]


def key_path(loc: Sequence[int | str]) -> str:
    """``("options", 3, "label")`` → ``options[3].label``; ``()`` → ``<top>``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + (part if _PLAIN_KEY.fullmatch(part) else repr(part))
    return text or TOP


def plain_message(error: ErrorDetails) -> str:
    """pydantic's message, without the prefix it puts before our validators' own words."""
    return error["msg"].removeprefix("Value error, ")


def validation_problems(
    source: Path | str, error: ValidationError, message: Message = plain_message
) -> str:
    """Each problem ``error`` holds as ``source: key: message``, one per line."""
    return "\n".join(
        f"{source}: {key_path(item['loc'])}: {message(item)}"
        for item in error.errors(include_url=False)
    )


def load_document(source: Path | str, text: str) -> Any:
    """The YAML document in ``text``; ``ConfigError`` ``source: not valid YAML: ...``."""
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {describe_yaml_error(exc)}") from None


def load_mapping(source: Path | str, text: str, expected: str) -> dict[str, Any]:
    """The YAML document in ``text``, which must be a mapping; ``expected`` says what it
    should hold (``"'menu:' and 'options:'"``) in the error when it is not."""
    raw = load_document(source, text)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {TOP}: expected a mapping with {expected}")
    return raw
