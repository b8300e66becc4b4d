"""What to do when the timeline database has no schema yet.

The engine migrates at start-up, but the fast paths of the classic AGI script (one process
per call) never do: against a database ``ivr-engine migrate`` has not run on, their errors
("no such table", a missing SQLite file) say so and name the command. Pure text checks, so
the call path imports nothing for it.
"""

from __future__ import annotations

_NO_SCHEMA = ("no such table", "UndefinedTableError", "UndefinedColumnError", "no such column")
_NO_FILE = "unable to open database file"  # SQLite with mode=rw: the file is not there


def migrate_hint(exc: BaseException) -> str:
    """``"; <what to do>"`` to append to the message of ``exc``, or ``""`` (another error)."""
    text = f"{type(exc).__name__}: {exc}"
    if any(sign in text for sign in _NO_SCHEMA):
        return "; the timeline schema is not there: run `ivr-engine migrate`"
    if _NO_FILE in text:
        return (
            "; the database file is missing or unreadable: run `ivr-engine migrate` to "
            "create it (and check the file's permissions)"
        )
    return ""
