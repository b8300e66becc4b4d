"""The image's `pip install .` gets every file pyproject.toml names (Docker is not run here).

setuptools fails the build when `readme` or a `license-files` entry is missing, so the
Dockerfile must COPY them before its `RUN pip install`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_dockerfile_copies_what_the_build_reads_before_installing() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {project["readme"], *project.get("license-files", [])}
    lines = (ROOT / "docker" / "Dockerfile").read_text().splitlines()
    install = next(i for i, line in enumerate(lines) if re.match(r"RUN pip install .*\.$", line))
    copied = {
        name for line in lines[:install] if line.startswith("COPY ") for name in line.split()[1:-1]
    }
    assert needed <= copied, needed - copied
    assert all((ROOT / name).is_file() for name in needed)
