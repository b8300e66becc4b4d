"""``PLAIN``: the annotation that holds an API string to ``domain.plain_text``'s rule.

Single-line text that ends up in front of people (a display name, a field value, a reason,
a subject, an address) refuses what ``plain_text`` refuses: C0/C1 controls, line and
paragraph separators, bidi embeddings/overrides/isolates. The check is ``plain_text`` itself,
so the 400 names the field and the character (``display_name: contains the control
character U+202E ...``); the JSON schema gets ``PLAIN_TEXT_PATTERN``, built from the same
definition, so the OpenAPI document states the constraint. Message bodies are not held to
it: they keep their line breaks (``schemas_messages.MessageText``).
"""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from ivr_engine.domain.plain_text import PLAIN_TEXT_PATTERN, plain_text


class _PlainText:
    """After the type's own constraints (lengths, stripping): ``plain_text``."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(plain_text, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = PLAIN_TEXT_PATTERN
        return json_schema


PLAIN = _PlainText()
