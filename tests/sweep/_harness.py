"""The every-architecture sweep: build (cached), scan with tiecheck, judge, write the results.

Building needs torch and transformers and happens in a separate process (``_build.py``), cached on disk under
a key of the transformers version and this harness's source, so the scans of the tiecheck under test (the one
importable here) can be re-run in seconds. Judging is plain: a clean save must have no warning or error; a
damaged save must carry the expected finding naming the expected tensors.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILDER = HERE / "_build.py"
SHAPE_DAMAGE = HERE / "_shape_damage.py"
WORKERS = 2
TIMEOUT = 180.0


@functools.cache
def transformers_version() -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import transformers; print(transformers.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def model_types() -> list[str]:
    """Every model type transformers registers a config for (CONFIG_MAPPING), as the builder's Python sees it."""
    code = "from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES as C; print(' '.join(C))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def cache_dir() -> Path:
    """Builds are keyed by transformers version and the builder's source: a change to either rebuilds."""
    digest = hashlib.sha256()
    for name in ("_build.py", "_tiny.py"):
        digest.update((HERE / name).read_bytes())
    key = f"{transformers_version()}-{digest.hexdigest()[:12]}"
    root = os.environ.get("TIECHECK_SWEEP_CACHE") or str(Path(tempfile.gettempdir()) / "tiecheck-sweep")
    return Path(root) / key


def build_missing(root: Path, types: list[str], workers: int = WORKERS, timeout: float = TIMEOUT) -> None:
    """Build the types whose manifest is not cached yet."""
    todo = [t for t in types if not (root / t / "manifest.json").exists()]
    if todo:
        root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
        subprocess.run(
            [sys.executable, str(BUILDER), str(root), str(workers), str(timeout), *todo],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def _shape_digest() -> str:
    return hashlib.sha256(SHAPE_DAMAGE.read_bytes()).hexdigest()[:12]


def damage_shapes_missing(root: Path, types: list[str], workers: int = WORKERS) -> None:
    """Derive the shape damage (``_shape_damage.py``) from the cached clean saves, where not current; cached
    apart from the builds, so that changing it does not rebuild every architecture."""
    digest = _shape_digest()

    def stale(t: str) -> bool:
        path = root / t / "shapes.json"
        return (root / t / "manifest.json").exists() and (
            not path.exists() or json.loads(path.read_text()).get("digest") != digest
        )

    todo = [t for t in types if stale(t)]
    if not todo:
        return
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    chunks = [todo[i::workers] for i in range(workers)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(SHAPE_DAMAGE), str(root), *chunk],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for chunk in chunks
        if chunk
    ]
    for proc in procs:
        proc.wait()


@dataclass
class TypeResult:
    model_type: str
    classes: list[str] = field(default_factory=list)
    checkpoints: int = 0
    damaged: int = 0
    false_alarms: list[dict[str, Any]] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)
    cannot_build: dict[str, str] = field(default_factory=dict)
    """Class (or "-" for the whole type) -> why no tiny model could be built."""
    seconds: float | None = None

    @property
    def built(self) -> bool:
        return bool(self.classes)

    @property
    def applicable(self) -> bool:
        return self.cannot_build.get("-") != "no model class registered for this config"

    @property
    def status(self) -> str:
        if not self.built:
            return "cannot-build" if self.applicable else "config-only"
        if self.false_alarms and self.misses:
            return "false-alarm+miss"
        if self.false_alarms:
            return "false-alarm"
        return "miss" if self.misses else "ok"


def _describe(finding: Any) -> dict[str, Any]:
    return {
        "code": finding.code,
        "severity": finding.severity.label,
        "tensors": list(finding.tensors)[:6],
        "message": finding.message[:300],
    }


def judge_type(root: Path, model_type: str) -> TypeResult:
    """Scan one type's checkpoints with the tiecheck importable here and compare with the manifest."""
    from tiecheck import Severity, scan

    folder = root / model_type
    manifest = json.loads((folder / "manifest.json").read_text())
    result = TypeResult(model_type, cannot_build=dict(manifest["failed"]), seconds=manifest.get("seconds"))
    shapes = folder / "shapes.json"
    derived = json.loads(shapes.read_text())["classes"] if shapes.exists() else []
    for entry in manifest["classes"]:
        result.classes.append(entry["class"])
        extra = [c for d in derived if d["class"] == entry["class"] for c in d["checkpoints"]]
        for ck in entry["checkpoints"] + extra:
            path = folder / ck["path"]
            where = {"class": entry["class"], "checkpoint": ck["path"]}
            try:
                report = scan(path)
            except Exception as exc:  # noqa: BLE001  (a scanner crash is a false alarm of the worst kind)
                result.false_alarms.append({**where, "crash": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            result.checkpoints += 1
            expect = ck["expect"]
            if expect is None:
                bad = [_describe(f) for f in report.findings if f.severity >= Severity.WARNING]
                if bad:
                    result.false_alarms.append({**where, "findings": bad})
                continue
            result.damaged += 1
            want = set(expect["tensors"])
            if not any(f.code == expect["code"] and want <= set(f.tensors) for f in report.findings):
                said = [_describe(f) for f in report.findings]
                result.misses.append({**where, "expected": expect, "findings": said})
    return result


def run(types: list[str] | None = None, root: Path | None = None, *, build: bool = True) -> list[TypeResult]:
    """Build (unless cached) and judge ``types`` (default: all); ``build=False`` judges only cached builds."""
    root = root or cache_dir()
    types = types or model_types()
    if build:
        build_missing(root, types)
        damage_shapes_missing(root, types)
    else:
        types = [t for t in types if (root / t / "manifest.json").exists()]
    return judge_all(root, types)


def judge_all(root: Path, types: list[str], workers: int = WORKERS) -> list[TypeResult]:
    """Judge in ``workers`` forked processes (scans are independent; the order of the result is ``types``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(judge_type, [root] * len(types), types, chunksize=8))


def totals(results: list[TypeResult]) -> dict[str, int]:
    built = [r for r in results if r.built]
    return {
        "model_types_registered": len(results),
        "model_types_with_a_model_class": sum(r.applicable for r in results),
        "architectures_covered": len(built),
        "model_classes_covered": sum(len(r.classes) for r in built),
        "checkpoints_scanned": sum(r.checkpoints for r in built),
        "damaged_checkpoints": sum(r.damaged for r in built),
        "clean_checkpoints_with_false_alarms": sum(len(r.false_alarms) for r in built),
        "architectures_with_false_alarms": sum(bool(r.false_alarms) for r in built),
        "damaged_checkpoints_missed": sum(len(r.misses) for r in built),
        "architectures_with_misses": sum(bool(r.misses) for r in built),
        "cannot_build": sum(r.applicable and not r.built for r in results),
    }


def as_json(results: list[TypeResult], label: str, elapsed: float) -> dict[str, Any]:
    return {
        "tiecheck": label,
        "transformers": transformers_version(),
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "elapsed_seconds": round(elapsed, 1),
        "totals": totals(results),
        "architectures": {
            r.model_type: {
                "status": r.status,
                "classes": r.classes,
                "false_alarms": r.false_alarms,
                "misses": r.misses,
                "cannot_build": r.cannot_build,
            }
            for r in results
        },
    }
