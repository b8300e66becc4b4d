"""Knowledge-based caller verification: a sensitive answer checked against the known value. Pure.

Caller ID can be spoofed and an account number is no secret, so a sensitive field
(``FieldSpec.sensitive``, e.g. the postcode) known for the identified customer is asked,
and what the caller keys in is compared with the known value, digit for digit:

* ``MATCHED``: the caller proved who they are; the call is verified, and the value, which
  the customer already has, is not saved again;
* ``MISMATCHED``: the caller is not verified, and the keyed value is NOT saved: whoever
  calls with someone else's caller ID or account number cannot overwrite their postcode;
* ``NOT_KNOWN``: nothing to check against (a first-time answer): saved as any answer is.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from enum import Enum

from ivr_engine.domain.models import KnownField


class KnowledgeCheck(Enum):
    MATCHED = "matched"
    MISMATCHED = "mismatched"
    NOT_KNOWN = "not_known"


def check_known_answer(name: str, keyed: str, known: Mapping[str, KnownField]) -> KnowledgeCheck:
    """How the keyed-in answer for field ``name`` compares with the customer's known value.

    A known value that is blank counts as not known; any other known value, even one the
    IVR would no longer accept (``FieldSpec.accepts``), is what the answer must match: a
    stored value is never replaced by an unverified caller (an agent or the API can fix it).
    The comparison takes the same time whatever the digits (``hmac.compare_digest``).
    """
    field = known.get(name)
    if field is None or not field.value.strip():
        return KnowledgeCheck.NOT_KNOWN
    expected = field.value.strip().encode("utf-8", "surrogatepass")
    given = keyed.encode("utf-8", "surrogatepass")
    if hmac.compare_digest(expected, given):
        return KnowledgeCheck.MATCHED
    return KnowledgeCheck.MISMATCHED
