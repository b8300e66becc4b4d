"""The directories the engine reads its menus from and spools calls to, checked at start-up
(``ivr-engine run`` and ``check-config``): a problem is a ``ConfigError`` naming the setting,
the path and what is wrong, not an ``OSError`` at the first call the database misses.

Customer data at rest (the timeline's SQLite file, the spool, the delivery stores in it): the
directories the engine creates for it are 0700 and the files 0600, whatever the umask (a
umask of 0 or 022 made them world-readable). Directories and files that exist are left as
they are: their owner chose.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ivr_engine.domain.errors import ConfigError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """``path`` and its missing parents created with mode 0700 whatever the umask; ``OSError``
    as ``mkdir`` raises it (``FileExistsError``: something not a directory is there)."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR_MODE)
        except FileExistsError:
            if directory.is_dir():
                continue  # made meanwhile by another process: its mode is its own
            raise
        os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode passes through the umask


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 whatever the umask, unless it exists (then
    untouched); whether it was created. SQLite gives a database's -wal, -shm and -journal
    files the mode of the database file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
    return True


def from_working_dir(path: Path) -> str:
    """For an error about ``path``: where a relative one was looked up. The defaults are
    relative (config/menus, config/routing.yaml) and a service rarely runs in the checkout."""
    return "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"


def check_menus_dir(path: Path) -> None:
    """``menus_dir`` exists, is a directory and can be listed."""
    if not path.exists():
        raise ConfigError(
            f"menus_dir: {path}: does not exist (the directory of menu *.yaml)"
            + from_working_dir(path)
        )
    if not path.is_dir():
        raise ConfigError(f"menus_dir: {path}: is not a directory (the directory of menu *.yaml)")
    try:
        os.listdir(path)
    except OSError as exc:
        raise ConfigError(f"menus_dir: {path}: cannot be listed: {exc.strerror}") from None


def check_spool_dir(path: Path, *, create: bool) -> None:
    """``spool_dir`` is a directory this process can create files in (``create``: made if
    missing, else only its nearest existing parent is checked). Calls are spooled there
    while the database is down: a spool that cannot be written would lose them."""
    if not path.exists():
        if not create:
            _check_creatable(path)
            return
        try:
            make_private_dir(path)
        except OSError as exc:
            raise ConfigError(f"spool_dir: {path}: cannot be created: {exc.strerror}") from None
    if not path.is_dir():
        raise ConfigError(f"spool_dir: {path}: is not a directory")
    try:  # a real file, not os.access: root on a read-only mount, ACLs, quotas
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
    except OSError as exc:
        raise ConfigError(
            f"spool_dir: {path}: not writable by this process ({exc.strerror}): calls "
            "spooled while the database is down would be lost"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _check_creatable(path: Path) -> None:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"spool_dir: {path}: cannot be created: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"spool_dir: {path}: cannot be created: {parent} is not writable")
