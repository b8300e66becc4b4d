"""Settings and menus for the classic (process-per-call) AGI script, validated once, not per call.

Validating them (pydantic models, PyYAML) cost ~40 % of a classic process's CPU
(bench/results.md, "Classic AGI start-up"). So a process that validated them writes what the
call path needs to ``<spool_dir>/classic-agi-config.json`` (the spool directory: the script
writes there already), keyed by a hash of everything the validation read: the settings file
(path and bytes), the ``IVR_ENGINE_*`` environment, the sources of the validators and
pydantic's version; the menu files (names and bytes) have their own hash. A later process
whose inputs hash the same reads the result back with the standard library only.

Anything else (no cache, another key, changed menus, a file that does not parse, a digest
that does not match) runs the full validation, which raises the same ``ConfigError`` as it
always did, and rewrites the cache. Writing is best effort (write, then rename): a spool
the process cannot write only costs the speed. Secrets are not stored (only the hash of
the inputs that hold them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args

from ivr_engine.data_dirs import make_private_dir
from ivr_engine.domain.models import CountryCodeWithoutPlus, Menu
from ivr_engine.menu_codec import decode_menus, encode_menus

CACHE_FILE = "classic-agi-config.json"
FORMAT = 4  # 2: use_withheld_caller_id; 3: spool_max_line_bytes; 4: caller_id_country_...
CONFIG_ENV = "IVR_ENGINE_CONFIG"  # the settings file; not a setting itself
SETTINGS_ENV_PREFIX = "IVR_ENGINE_"
DEFAULT_SPOOL_DIR = "data/spool"  # Settings.spool_dir's default (a test checks)
_PACKAGE = Path(__file__).parent
# Every module of ours that validating the settings and menus imports (a test keeps the list
# whole): a change to any of them must miss the cache.
_VALIDATORS = (
    "__init__.py",
    "config_errors.py",
    "data_dirs.py",
    "domain/__init__.py",
    "domain/errors.py",
    "domain/models.py",
    "menu_codec.py",
    "menu_config.py",
    "ports.py",
    "settings.py",
    "telephony/__init__.py",
    "telephony/peers.py",
    "timeline/__init__.py",
    "timeline/errors.py",
    "timeline/pg_servers.py",
    "timeline/urls.py",
    "yaml_load.py",
)
_MISS_ERRORS = (ValueError, KeyError, TypeError, AttributeError, RecursionError)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallSettings:
    """The settings one classic call uses (validated with all the others)."""

    database_url: str
    menus_dir: Path
    spool_dir: Path
    spool_max_line_bytes: int
    decision_deadline_ms: int
    default_region: str
    caller_id_country_code_without_plus: CountryCodeWithoutPlus
    use_withheld_caller_id: bool


def load_call_config(environ: Mapping[str, str]) -> tuple[CallSettings, Mapping[str, Menu]]:
    """The validated settings and menus: from the cache when its key matches, else from
    ``load_settings`` and ``load_menus`` (their ``ConfigError``s unchanged)."""
    config = environ.get(CONFIG_ENV)
    config_file = Path(config) if config else None
    settings_env = {k: v for k, v in environ.items() if k != CONFIG_ENV}
    key = settings_key(config_file, settings_env)
    cache = cache_path(config_file, settings_env)
    if key is not None and cache is not None:
        found = read_cache(cache, key)
        if found is not None:
            return found
    settings, menus, menus_read = validate(config_file, settings_env)
    if key is not None and cache is not None and cache.parent == settings.spool_dir:
        write_cache(cache, key, settings, menus, menus_read)
    return settings, menus


def validate(
    config_file: Path | None, environ: Mapping[str, str]
) -> tuple[CallSettings, Mapping[str, Menu], str | None]:
    """The full validation (imports pydantic and PyYAML), with the ``menus_key`` of the menu
    files taken before they are read: a file edited during the validation then makes the
    next process miss the cache, instead of old menus being cached under the new key."""
    from ivr_engine.menu_config import load_menus
    from ivr_engine.settings import load_settings

    full = load_settings(config_file, environ)
    menus_read = menus_key(full.menus_dir)
    menus = load_menus(full.menus_dir)  # prompts are checked by `ivr-engine check-config`
    settings = CallSettings(
        database_url=full.database_url,
        menus_dir=full.menus_dir,
        spool_dir=full.spool_dir,
        spool_max_line_bytes=full.spool_max_line_bytes,
        decision_deadline_ms=full.decision_deadline_ms,
        default_region=full.default_region,
        caller_id_country_code_without_plus=full.caller_id_country_code_without_plus,
        use_withheld_caller_id=full.use_withheld_caller_id,
    )
    return settings, menus, menus_read


def settings_key(config_file: Path | None, environ: Mapping[str, str]) -> str | None:
    """Hash of what the settings' validation reads; ``None`` if something cannot be read."""
    digest = hashlib.sha256(f"format {FORMAT}\0".encode())
    try:
        for name in _VALIDATORS:
            digest.update(_PACKAGE.joinpath(name).read_bytes())
        digest.update(_library_file("pydantic", "version.py"))
        digest.update(_library_file("phonenumbers", "__init__.py"))  # default_region's regions
        if config_file is not None:
            digest.update(config_file.read_bytes())
    except OSError:
        return None
    settings_env = sorted((k, v) for k, v in environ.items() if k.startswith(SETTINGS_ENV_PREFIX))
    digest.update(json.dumps([str(config_file), settings_env]).encode())
    return digest.hexdigest()


def menus_key(directory: Path) -> str | None:
    """Hash of the menu files ``load_menus`` reads (names and bytes); ``None``: unreadable."""
    if not directory.is_dir():
        return None
    digest = hashlib.sha256()
    try:
        for path in sorted(directory.glob("*.y*ml")):
            data = path.read_bytes()
            digest.update(f"{path.name}\0{len(data)}\0".encode() + data)
    except OSError:
        return None
    return digest.hexdigest()


def cache_path(config_file: Path | None, environ: Mapping[str, str]) -> Path | None:
    """``<spool_dir>/CACHE_FILE``, the spool directory taken from the layers unvalidated
    (validation later checks it is the same); ``None`` if it cannot be told."""
    spool: object = environ.get(f"{SETTINGS_ENV_PREFIX}SPOOL_DIR")
    if spool is None and config_file is not None:
        spool = _spool_dir_in_file(config_file)
    if spool is None and config_file is None:
        spool = DEFAULT_SPOOL_DIR
    return Path(spool) / CACHE_FILE if isinstance(spool, str) and spool else None


def _spool_dir_in_file(config_file: Path) -> object:
    """The file's ``spool_dir`` (its default when absent); ``None`` if the file is unreadable."""
    import yaml  # only with a settings file, and still no pydantic

    from ivr_engine.yaml_load import load_yaml

    try:
        raw = load_yaml(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if raw is None:
        return DEFAULT_SPOOL_DIR
    return raw.get("spool_dir", DEFAULT_SPOOL_DIR) if isinstance(raw, dict) else None


def read_cache(path: Path, key: str) -> tuple[CallSettings, Mapping[str, Menu]] | None:
    """The cached settings and menus if ``key`` and the menu files still match, else None."""
    try:
        document = json.loads(path.read_bytes())
        if document["format"] != FORMAT or document["key"] != key:
            return None
        body = document["body"]
        if document["digest"] != _digest(body):
            log.warning("%s: digest does not match, validating again", path)
            return None
        settings = _decode_settings(body["settings"])
        if body["menus_key"] != menus_key(settings.menus_dir):
            return None
        return settings, decode_menus(body["menus"])
    except FileNotFoundError:
        return None
    except OSError as exc:  # e.g. the spool is not a directory: the validation will tell
        log.info("%s: cannot read the configuration cache: %r", path, exc)
        return None
    except _MISS_ERRORS as exc:
        log.warning("%s: unreadable (%r), validating again", path, exc)
        return None


def write_cache(
    path: Path,
    key: str,
    settings: CallSettings,
    menus: Mapping[str, Menu],
    menus_read: str | None,
) -> None:
    """Best effort: a temporary file renamed over ``path`` (readers see all or nothing).
    ``menus_read``: the ``menus_key`` of the files ``menus`` were validated from."""
    body = {
        "settings": _encode_settings(settings),
        "menus_key": menus_read,
        "menus": encode_menus(menus),
    }
    document = {"format": FORMAT, "key": key, "digest": _digest(body), "body": body}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        make_private_dir(path.parent)  # the spool directory
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(document, sort_keys=True).encode())
        os.replace(temporary, path)
    except OSError as exc:
        log.info("%s: cannot write the configuration cache: %r", path, exc)
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def _digest(body: Any) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _encode_settings(settings: CallSettings) -> dict[str, Any]:
    return {
        "database_url": settings.database_url,
        "menus_dir": str(settings.menus_dir),
        "spool_dir": str(settings.spool_dir),
        "spool_max_line_bytes": settings.spool_max_line_bytes,
        "decision_deadline_ms": settings.decision_deadline_ms,
        "default_region": settings.default_region,
        "caller_id_country_code_without_plus": settings.caller_id_country_code_without_plus,
        "use_withheld_caller_id": settings.use_withheld_caller_id,
    }


def _decode_settings(data: dict[str, Any]) -> CallSettings:
    if set(data) != set(CallSettings.__slots__):
        raise ValueError(f"settings keys {sorted(data)}")
    return CallSettings(
        database_url=str(data["database_url"]),
        menus_dir=Path(data["menus_dir"]),
        spool_dir=Path(data["spool_dir"]),
        spool_max_line_bytes=int(data["spool_max_line_bytes"]),
        decision_deadline_ms=int(data["decision_deadline_ms"]),
        default_region=str(data["default_region"]),
        caller_id_country_code_without_plus=_without_plus(
            data["caller_id_country_code_without_plus"]
        ),
        use_withheld_caller_id=data["use_withheld_caller_id"] is True,
    )


def _without_plus(value: object) -> CountryCodeWithoutPlus:
    if value not in get_args(CountryCodeWithoutPlus):
        raise ValueError(f"caller_id_country_code_without_plus {value!r}")
    return cast(CountryCodeWithoutPlus, value)


def _library_file(package: str, name: str) -> bytes:
    """A library's file holding its version, from the first ``package`` on ``sys.path``
    (read, not imported: importing pydantic is what the cache saves;
    ``importlib.util.find_spec`` alone costs ~3 ms)."""
    for entry in sys.path:
        version = Path(entry or ".") / package / name
        if version.is_file():
            return version.read_bytes()
    return f"no {package}".encode()
