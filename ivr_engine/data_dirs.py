"""The directories the engine reads its menus from and spools calls to, checked at start-up
(``ivr-engine run`` and ``check-config``): a problem is a ``ConfigError`` naming the setting,
the path and what is wrong, not an ``OSError`` at the first call the database misses."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ivr_engine.domain.errors import ConfigError


def check_menus_dir(path: Path) -> None:
    """``menus_dir`` exists, is a directory and can be listed."""
    if not path.exists():
        raise ConfigError(f"menus_dir: {path}: does not exist (the directory of menu *.yaml)")
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
            path.mkdir(parents=True, exist_ok=True)
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
