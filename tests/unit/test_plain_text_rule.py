"""``domain.plain_text``: one definition (``REFUSED_RANGES``) for the check and the pattern."""

from __future__ import annotations

import re
import sys
import unicodedata

from ivr_engine.domain.plain_text import (
    PLAIN_TEXT_PATTERN,
    first_control_character,
    plain_text,
)

BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def test_the_ranges_are_cc_zl_zp_and_the_bidi_controls_over_every_code_point() -> None:
    """What the docstring promises, checked against this Python's Unicode database."""
    pattern = re.compile(PLAIN_TEXT_PATTERN)  # fullmatch: in Python $ also matches before "\n"
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue  # surrogates: no str from JSON or UTF-8 holds one
        meant = char in BIDI or unicodedata.category(char) in ("Cc", "Zl", "Zp")
        assert (first_control_character(char) is not None) == meant, hex(code)
        assert (pattern.fullmatch(char) is None) == meant, hex(code)


def test_marks_and_joiners_stay_and_the_message_names_the_character() -> None:
    for kept in ("\u200e", "\u200f", "\u061c", "\u200c", "\u200d"):
        assert plain_text(f"a{kept}b") == f"a{kept}b"
    for refused, code in (("\u0085", "U+0085"), ("\u202e", "U+202E"), ("\u2028", "U+2028")):
        try:
            plain_text(f"a{refused}b")
        except ValueError as exc:
            assert code in str(exc)
        else:
            raise AssertionError(f"{code} taken")
