"""HTTP API tokens rotated on a running engine (SIGHUP): ``api_tokens`` and ``admin_token``
are read again from the sources the engine started with and put in force for the next request.

The sources (``SettingsSource``) are those of the start: the settings file is read again; the
environment and the command line are the ones the process started with (they cannot change
under a running process), so a token set there stays as it was. The new settings must pass
every start-up check, as a whole (``load_settings``): a file with any error is refused and the
tokens in force stay. Only the tokens are applied; any other setting that differs is named in
the log and waits for a restart.

One more rule than at start-up: a reload never takes the last API token away. The start-up
rules allow an API without tokens on a loopback ``http_host``, but an engine that started
with tokens was protected on purpose, its clients send tokens, and an API without them has
another guard (the ``Host`` check against DNS rebinding) and a timeline page set up at start;
a file emptied by mistake must not open it. Running without tokens takes a restart. The
other way, an open API given tokens by a reload, is allowed (it only closes).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr_engine.domain.errors import ConfigError
from ivr_engine.settings import Settings, load_settings

TOKEN_SETTINGS = ("api_tokens", "admin_token")


@dataclass(frozen=True)
class SettingsSource:
    """Where the settings came from: the file (None: none), the environment and the command
    line's overrides, as at start-up; ``load`` reads the file again."""

    config_file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> Settings:
        """``ConfigError`` naming the source and the key, as at start-up."""
        return load_settings(self.config_file, self.environ, self.overrides)

    @property
    def name(self) -> str:
        return str(self.config_file) if self.config_file is not None else "settings"


@dataclass(frozen=True)
class TokenReload:
    settings: Settings  # the running settings with the new tokens
    changed: bool  # the tokens differ from those in force
    restart_needed: tuple[str, ...]  # other settings that differ: applied at the next start


def reload_tokens(running: Settings, source: SettingsSource) -> TokenReload:
    """The new tokens from ``source``, checked; ``ConfigError`` (naming the file and the key,
    never a token) and nothing changes if the settings fail a check or would leave no token."""
    fresh = source.load()
    if running.api_tokens and not fresh.api_tokens:
        raise ConfigError(
            f"{source.name}: api_tokens: no token left: a reload does not open an HTTP API "
            "that started with tokens (its clients send them; an emptied file is more likely "
            "a mistake). Put at least one token back, or restart the engine to serve the API "
            "without tokens"
        )
    updated = running.model_copy(update={key: getattr(fresh, key) for key in TOKEN_SETTINGS})
    return TokenReload(
        settings=updated,
        changed=_secrets(updated) != _secrets(running),
        restart_needed=_differences(fresh, running),
    )


def describe(reload: TokenReload, source: SettingsSource) -> str:
    """The log line of a reload: how many tokens, never which."""
    settings = reload.settings
    admin = "set" if settings.admin_token is not None else "not set"
    what = "changed" if reload.changed else "unchanged"
    text = (
        f"API tokens reloaded from {source.name} ({what}): {len(settings.api_tokens)} API "
        f"token(s), admin_token {admin}"
    )
    if reload.restart_needed:
        text += f"; also changed, in force only after a restart: {', '.join(reload.restart_needed)}"
    return text


def describe_unexpected(exc: BaseException) -> str:
    """A reload's exception that no check expected (a bug, a library's surprise), for the
    log: its type and where it was raised, never its message (which may quote the file)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return f"unexpected {type(exc).__name__}"
    last = frames[-1]
    where = "/".join(Path(last.filename).parts[-2:])
    return f"unexpected {type(exc).__name__} (in {where}:{last.lineno}, {last.name})"


def _secrets(settings: Settings) -> tuple[list[str], str | None]:
    admin = settings.admin_token
    api = [token.get_secret_value() for token in settings.api_tokens]
    return api, None if admin is None else admin.get_secret_value()


def _differences(fresh: Settings, running: Settings) -> tuple[str, ...]:
    """The names (never the values) of the settings other than the tokens that differ."""
    ours = running.model_dump(exclude=set(TOKEN_SETTINGS))
    theirs = fresh.model_dump(exclude=set(TOKEN_SETTINGS))
    return tuple(sorted(key for key in ours if ours[key] != theirs[key]))
