"""config/engine.example.yaml names every setting, at its default, and loads as-is."""

from __future__ import annotations

from pathlib import Path

import yaml

from ivr_engine.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config/engine.example.yaml"


def test_the_example_names_every_setting_and_nothing_else() -> None:
    keys = set(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    assert keys == set(Settings.model_fields)


def test_the_example_loads_to_the_defaults() -> None:
    loaded = load_settings(EXAMPLE, environ={})
    assert loaded.model_dump() == Settings().model_dump()
