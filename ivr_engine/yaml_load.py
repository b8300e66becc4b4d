"""Loading YAML configuration so that every failure is a ``yaml.YAMLError``.

PyYAML's safe constructors raise more than ``YAMLError``: a value shaped like a date that
is not one (``2024-02-30``) or ``!!int x`` raise ``ValueError``, ``!!timestamp x``
``AttributeError``, and deeply nested flow collections ``RecursionError``. Every
configuration loader turns ``YAMLError`` into a ``ConfigError`` naming the file; loading
through here keeps that true for any exception a constructor raises, so an operator's typo
is "file: not valid YAML: ..." (said by ``describe_yaml_error``) and not a traceback.

Such a failure is said by where it happened (line, column), the tag and the exception's
type only, never by the exception's own message: it quotes the value (``int()`` quotes up
to 200 characters of it), and a configuration file holds secrets.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml

# A quoted piece of the file in a YAML message (an alias, a tag, a value that could not be
# built) that may be part of a secret: 8 characters or more without a space (tokens are 32
# or more, and have none). Not PyYAML's name for a token it found ('<scalar>', '<anchor>'):
# anchors and aliases cannot hold '<'; a tag could only as a deliberate '%3C' escape in a
# verbatim tag, so a secret written that way is the one piece shown.
_QUOTED = re.compile(r"'(?!<[a-z]+>')[^'\s]{8,}'|\"[^\"\s]{8,}\"")
_STANDARD_TAG = "tag:yaml.org,2002:"


class UnbuildableValue(yaml.MarkedYAMLError):
    """The YAML parsed, but a value in it could not be built (or nesting was too deep):
    where (``problem_mark``: line and column, no copy of the line) and the exception's type."""

    @classmethod
    def of(cls, exc: Exception, node: yaml.Node | None) -> UnbuildableValue:
        if isinstance(exc, RecursionError):
            what = "nested too deeply"
        else:
            tag = node.tag if node is not None else ""
            shown = f"!!{tag.removeprefix(_STANDARD_TAG)} " if tag.startswith(_STANDARD_TAG) else ""
            what = f"a {shown}value cannot be built"
        mark = None
        if node is not None:  # the same place, without the buffer: str() copies no line
            start = node.start_mark
            mark = yaml.Mark(start.name, start.index, start.line, start.column, None, 0)
        return cls(problem=f"{what} ({type(exc).__name__})", problem_mark=mark)


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping key given twice (PyYAML keeps the last one
    silently: a second ``api_tokens:`` or ``digit:`` would quietly win). The error says where
    the mapping starts and where the key comes again (line, column), and the key when it is
    short: a name, not a value. Keys merged in with ``<<`` may be overridden, as YAML says."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    _duplicate(key),
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _duplicate(key: object) -> str:
    """``duplicate key: welcome_back``, unquoted (a quoted piece would be masked as a
    possible secret); a long key (not a name) is not shown."""
    shown = str(key)
    if len(shown) > 64 or not shown.isprintable():
        return "duplicate key"
    return f"duplicate key: {shown}"


def load_yaml(text: str, loader: type[yaml.SafeLoader] = UniqueKeyLoader) -> Any:
    """``yaml.load`` with a safe loader that refuses duplicate keys; anything it raises is a
    ``yaml.YAMLError``."""
    reader = loader(text)
    try:
        return reader.get_single_data()
    except yaml.YAMLError:
        raise
    except Exception as exc:  # a constructor's own failure, whatever its type
        # the nodes being built when it failed, innermost last (PyYAML's own bookkeeping)
        building = list(reader.recursive_objects)
        raise UnbuildableValue.of(exc, building[-1] if building else None) from None
    finally:
        reader.dispose()


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """What is wrong and where (line, column), without the copy of the line PyYAML adds to
    its message nor a quoted piece of 8 characters or more: a configuration file holds
    secrets (``api_tokens``, ``admin_token``, passwords in URLs, webhook secrets, password
    hashes) and this goes to logs. Every configuration loader says a ``YAMLError`` with
    this, after the file's name; never with ``str(exc)``."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return _QUOTED.sub("'...'", str(exc))
    parts = []
    for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if text is None:
            continue
        where = "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"
        parts.append(_QUOTED.sub("'...'", text) + where)
    return "; ".join(parts) or type(exc).__name__
