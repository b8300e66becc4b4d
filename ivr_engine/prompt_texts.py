"""The prompt texts file (``prompts/prompts.yaml``): reading, validating, where each prompt goes.

Files land in ``<out_dir>/<language>/ivr-engine/<id>.wav``; Asterisk's ``format_wav`` plays
them as ``ivr-engine/<id>`` (no extension) once ``<out_dir>/<language>`` is its sounds
directory for that language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import yaml

from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.plain_text import plain_text
from ivr_engine.yaml_load import describe_yaml_error, load_yaml

PROMPT_NAMESPACE = "ivr-engine"
"""Sub-directory of a language's sounds directory; prompt ``X`` is played as ``ivr-engine/X``."""

DEFAULT_VOICE = "slt"

# matched with fullmatch: re's "$" also matches before a final "\n" ("welcome\n" passed)
_ID_RE = re.compile(r"[a-z0-9-]+")
_LANGUAGE_RE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
_VOICE_RE = re.compile(r"[A-Za-z0-9_]+")
_TOP_LEVEL_KEYS = frozenset({"language", "voice", "prompts"})


@dataclass(frozen=True, slots=True)
class PromptSet:
    """The validated contents of ``prompts.yaml``."""

    source: Path
    language: str
    voice: str
    prompts: Mapping[str, str]  # id -> text, in file order

    def path_for(self, out_dir: Path, prompt_id: str) -> Path:
        return out_dir / self.language / PROMPT_NAMESPACE / f"{prompt_id}.wav"


# --------------------------------------------------------------------------- prompt texts


def load_prompt_texts(path: Path) -> PromptSet:
    """Read and validate ``prompts.yaml``; every error names the file and the key.

    Expected structure::

        language: en          # Asterisk language directory the files go to
        voice: slt            # a voice listed by `flite -lv`
        prompts:
          welcome: Thank you for calling Seed Telecom.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read prompt texts: {exc}") from exc
    try:
        data = load_yaml(text)  # duplicate keys refused
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {describe_yaml_error(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping with keys language, voice, prompts; "
            f"got {type(data).__name__}"
        )
    unknown = sorted(str(k) for k in data if k not in _TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (allowed: language, voice, prompts)")

    language = data.get("language")
    if not isinstance(language, str) or not _LANGUAGE_RE.fullmatch(language):
        raise ConfigError(
            f"{path}: language: expected an Asterisk language code such as 'en' or 'en_GB', "
            f"got {language!r}"
        )
    voice = data.get("voice", DEFAULT_VOICE)
    if not isinstance(voice, str) or not _VOICE_RE.fullmatch(voice):
        raise ConfigError(
            f"{path}: voice: expected a flite voice name such as 'slt' (see `flite -lv`), "
            f"got {voice!r}"
        )

    raw = data.get("prompts")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: prompts: expected a non-empty mapping of prompt id -> text")
    prompts: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _ID_RE.fullmatch(key):
            shown = key if isinstance(key, str) and key.isprintable() else repr(key)
            raise ConfigError(
                f"{path}: prompts.{shown}: invalid prompt id {key!r} "
                "(use lower-case letters, digits and '-'; it becomes the file name)"
            )
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: prompts.{key}: text must be a non-empty string")
        text = " ".join(value.split())  # line breaks of a folded YAML text are spaces
        try:
            prompts[key] = plain_text(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: prompts.{key}: text {exc}") from None
    return PromptSet(source=path, language=language, voice=voice, prompts=MappingProxyType(prompts))
