"""Command-line conventions: help, version, placeholders, dependencies that earn their place."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
#: Distribution name -> the module it provides, for runtime dependencies.
MODULES = {"typer": "typer", "rich": "rich", "xxhash": "xxhash", "numpy": "numpy", "tomli": "tomli"}


def _runtime_dependencies() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [re.split(r"[<>=!;\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]]


def test_every_runtime_dependency_is_imported_by_src() -> None:
    source = "\n".join(p.read_text() for p in (REPO / "src").rglob("*.py"))
    for dist in _runtime_dependencies():
        module = MODULES.get(dist, dist.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {module}\b", source, re.MULTILINE), f"{dist} is never imported"


def test_cli_libraries_are_pinned_to_a_major_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for name in ("typer", "rich"):
        spec = next(d for d in project["dependencies"] if d.startswith(name))
        assert "<" in spec, f"{name} has no upper bound: {spec}"
