"""Text shown to people (agent names, teams, prompt names, the API's names, labels, field
values, subjects, addresses, reasons) holds no control characters.

Refused: C0/C1 controls (``\\n``, ``\\x00``, DEL, U+0085 NEXT LINE...), the line and
paragraph separators, and the bidirectional embeddings, overrides and isolates (U+202E
RIGHT-TO-LEFT OVERRIDE and its kin), which make a name display as something else than it
is. Joiners (U+200C/U+200D) stay: scripts need them; so do the implicit marks (U+200E LRM,
U+200F RLM, U+061C ALM): invisible strong letters that reorder nothing, which a name mixing
right-to-left and Latin text needs to show right ("<Hebrew>\\u200f (Miriam)").

One definition, ``REFUSED_RANGES``: the check here and ``PLAIN_TEXT_PATTERN`` (the same rule
as a JSON Schema / ECMA-262 pattern, for the OpenAPI document) are both built from it. The
ranges are exactly the general categories Cc, Zl and Zp, which Unicode's stability policy
freezes, plus the bidi controls (a unit test checks this over every code point).
"""

from __future__ import annotations

import re
from typing import Final

# (first, last) code points: C0, DEL + C1 (Cc), U+2028/U+2029 (Zl, Zp), U+202A-U+202E
# (embeddings, overrides, pop), U+2066-U+2069 (isolates).
REFUSED_RANGES: Final = ((0x00, 0x1F), (0x7F, 0x9F), (0x2028, 0x202E), (0x2066, 0x2069))
_CLASS = "".join(f"\\u{first:04X}-\\u{last:04X}" for first, last in REFUSED_RANGES)
PLAIN_TEXT_PATTERN: Final = f"^[^{_CLASS}]*$"  # ECMA-262 (JSON Schema); in Python: fullmatch
_REFUSED = re.compile(f"[{_CLASS}]")


def first_control_character(text: str) -> str | None:
    """The first refused character of ``text``, None when there is none."""
    found = _REFUSED.search(text)
    return None if found is None else found.group()


def control_character_message(char: str) -> str:
    return (
        f"contains the control character U+{ord(char):04X} "
        "(line breaks, NUL and bidirectional overrides are refused)"
    )


def plain_text(text: str) -> str:
    """``text`` unchanged; ``ValueError`` naming the first control character it holds."""
    char = first_control_character(text)
    if char is not None:
        raise ValueError(control_character_message(char))
    return text
