"""Text shown to people (agent names, teams, prompt names) holds no control characters.

Refused: C0/C1 controls (``\\n``, ``\\x00``, DEL...), the line and paragraph separators,
and the bidirectional embeddings, overrides and isolates (U+202E RIGHT-TO-LEFT OVERRIDE and
its kin), which make a name display as something else than it is. Joiners (U+200C/U+200D)
stay: scripts need them; so do the implicit marks (U+200E LRM, U+200F RLM, U+061C ALM):
invisible strong letters that reorder nothing, which a name mixing right-to-left and Latin
text needs to show right ("<Hebrew>\\u200f (Miriam)").
"""

from __future__ import annotations

import unicodedata

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_REFUSED_CATEGORIES = ("Cc", "Zl", "Zp")


def first_control_character(text: str) -> str | None:
    """The first refused character of ``text``, None when there is none."""
    for char in text:
        if char in BIDI_CONTROLS or unicodedata.category(char) in _REFUSED_CATEGORIES:
            return char
    return None


def plain_text(text: str) -> str:
    """``text`` unchanged; ``ValueError`` naming the first control character it holds."""
    char = first_control_character(text)
    if char is not None:
        raise ValueError(
            f"contains the control character U+{ord(char):04X} "
            "(line breaks, NUL and bidirectional overrides are refused)"
        )
    return text
