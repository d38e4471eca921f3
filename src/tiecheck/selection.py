"""Rule selection the way ruff does it: ``select``/``ignore`` by code or prefix, severity overrides, fail level.

Settings come in layers (a config file, then the command line); a later layer wins. Within a layer
the most specific selector wins, and ``ignore`` wins over ``select`` at equal specificity, so
``select = ["TC101"], ignore = ["TC1"]`` keeps TC101. A layer with ``select`` starts afresh; a layer
with only ``ignore`` removes rules from what the earlier layers enabled.

Selection is a pure function on a :class:`~tiecheck.scan.Report` (:func:`apply_selection`), so the
library and every output format see the same findings.

Config files: the first ``tiecheck.toml`` (top-level keys) or ``pyproject.toml`` with a
``[tool.tiecheck]`` table found from the working directory upward (``tiecheck.toml`` wins in the same
folder), or the one ``--config`` names. Never from inside a scanned checkpoint: its author must not
choose how it is checked. A config file cannot deselect or lower the unsafe-pickle rules
(:data:`PROTECTED`); only the command line can.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tiecheck.errors import TiecheckError
from tiecheck.findings import Severity
from tiecheck.rules.catalog import RULES
from tiecheck.scan import Report

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_FILES = ("tiecheck.toml", "pyproject.toml")
CONFIG_KEYS = ("select", "ignore", "fail-on", "severity")
ALL = "ALL"


COMMAND_LINE = "command line"
#: Rules a config file can neither deselect nor lower: a pickle that runs code, or that cannot be read
#: (and so cannot be shown not to), must not pass a gate because of a settings file.
PROTECTED = frozenset({"TC401", "TC403"})


def _where(source: str, key: str) -> str:
    """How a message names a setting: ``--select`` on the command line, ``<file> select`` in a config."""
    return f"--{key}" if source == COMMAND_LINE else f"{source} {key}"


class SelectionError(TiecheckError):
    """An unknown rule code, a bad severity or a malformed config file: a usage error (exit code 2)."""


def parse_selectors(values: Iterable[str], where: str) -> tuple[str, ...]:
    """Upper-cased selectors from repeated and/or comma-separated values; each must match a rule."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            selector = part.strip().upper()
            if not selector:
                continue
            if selector != ALL and not any(code.startswith(selector) for code in RULES):
                raise SelectionError(f"{where}: unknown rule code or prefix {part.strip()!r} (see `tiecheck rules`)")
            out.append(selector)
    return tuple(out)


def parse_severity(text: str, where: str) -> Severity:
    try:
        return Severity.parse(text.strip())
    except KeyError:
        raise SelectionError(f"{where}: unknown severity {text!r} (expected error, warning or info)") from None


def parse_overrides(values: Iterable[str], where: str) -> tuple[tuple[str, Severity], ...]:
    """``CODE=level`` items (repeated and/or comma-separated) as (selector, severity) pairs."""
    pairs: list[tuple[str, Severity]] = []
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            code, sep, level = part.partition("=")
            if not sep:
                raise SelectionError(f"{where}: expected CODE=LEVEL, got {part.strip()!r}")
            (selector,) = parse_selectors([code], where)
            pairs.append((selector, parse_severity(level, f"{where} {selector}")))
    return tuple(pairs)


@dataclass(frozen=True)
class Selection:
    """One layer of settings; ``None`` / empty means "say nothing, keep what earlier layers said"."""

    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    severity: tuple[tuple[str, Severity], ...] = ()
    """(code or prefix, severity) pairs; the longest matching prefix wins."""
    fail_on: Severity | None = None
    source: str = "settings"
    """Where the layer comes from, for messages."""
    from_file: bool = False
    """A config file's layer: it cannot deselect or lower the :data:`PROTECTED` rules."""

    def __post_init__(self) -> None:
        """Validate and upper-case the selectors, so a layer built directly behaves like a parsed one."""
        norm = object.__setattr__
        if self.select is not None:
            norm(self, "select", parse_selectors(self.select, _where(self.source, "select")))
        norm(self, "ignore", parse_selectors(self.ignore, _where(self.source, "ignore")))
        norm(
            self,
            "severity",
            tuple((parse_selectors([s], _where(self.source, "severity"))[0], v) for s, v in self.severity),
        )

    @classmethod
    def from_options(
        cls,
        select: Iterable[str] | None = None,
        ignore: Iterable[str] = (),
        severity: Iterable[str] | Mapping[str, str] = (),
        fail_on: str | Severity | None = None,
        source: str = "settings",
        from_file: bool = False,
    ) -> Selection:
        """Build a layer from strings as a user writes them (``"TC1,TC301"``, ``"TC104=error"``)."""
        items = [f"{k}={v}" for k, v in severity.items()] if isinstance(severity, Mapping) else list(severity)
        return cls(
            select=None if select is None else parse_selectors(select, _where(source, "select")),
            ignore=parse_selectors(ignore, _where(source, "ignore")),
            severity=parse_overrides(items, _where(source, "severity")),
            fail_on=fail_on
            if isinstance(fail_on, Severity) or fail_on is None
            else parse_severity(fail_on, _where(source, "fail-on")),
            source=source,
            from_file=from_file,
        )


@dataclass(frozen=True)
class Settings:
    """Layers resolved: which rules run, at which severity, and when the scan fails."""

    enabled: frozenset[str]
    severity: tuple[tuple[str, Severity], ...] = ()
    fail_on: Severity = Severity.WARNING
    sources: tuple[str, ...] = field(default=())
    protected_severity: tuple[tuple[str, Severity], ...] = ()
    """The overrides that apply to the :data:`PROTECTED` rules: none from a config file."""

    def severity_for(self, code: str, default: Severity) -> Severity:
        if code in PROTECTED:
            return _longest(code, self.protected_severity, default)
        return _longest(code, self.severity, default)


def resolve(*layers: Selection | None) -> Settings:
    """Apply the layers in order (defaults: every rule, catalogue severities, fail on warning)."""
    enabled = set(RULES)
    overrides: dict[str, Severity] = {}
    protected: dict[str, Severity] = {}
    fail_on = Severity.WARNING
    sources: list[str] = []
    for layer in layers:
        if layer is None:
            continue
        sources.append(layer.source)
        kept = {code for code in RULES if _enabled(code, code in enabled, layer.select, layer.ignore)}
        enabled = kept | (enabled & PROTECTED) if layer.from_file else kept
        overrides.update(layer.severity)
        if not layer.from_file:
            protected.update(layer.severity)
        if layer.fail_on is not None:
            fail_on = layer.fail_on
    return Settings(frozenset(enabled), tuple(overrides.items()), fail_on, tuple(sources), tuple(protected.items()))


def apply_selection(report: Report, settings: Settings) -> Report:
    """The report with only the enabled rules' findings, at their overridden severity, in report order."""
    findings = []
    for f in report.findings:
        if f.code not in settings.enabled:
            continue
        severity = settings.severity_for(f.code, f.severity)
        findings.append(f if severity is f.severity else replace(f, severity=severity))
    findings.sort(key=lambda f: (-f.severity, f.code, f.files, f.tensors))
    return replace(report, findings=tuple(findings))


def _specificity(code: str, selectors: Iterable[str]) -> int:
    """Length of the longest selector matching ``code`` (``ALL`` counts 0), -1 when none does."""
    best = -1
    for s in selectors:
        if s == ALL:
            best = max(best, 0)
        elif code.startswith(s):
            best = max(best, len(s))
    return best


def _enabled(code: str, before: bool, select: tuple[str, ...] | None, ignore: tuple[str, ...]) -> bool:
    selected = _specificity(code, select) if select is not None else (0 if before else -1)
    return selected >= 0 and selected > _specificity(code, ignore)


def _longest(code: str, pairs: Iterable[tuple[str, Severity]], default: Severity) -> Severity:
    best, value = -1, default
    for selector, severity in pairs:
        n = 0 if selector == ALL else len(selector) if code.startswith(selector) else -1
        if n >= best and n >= 0:
            best, value = n, severity
    return value


# --- config files -----------------------------------------------------------------------------


def find_config(start: str | Path) -> Path | None:
    """The config file that governs ``start`` (a folder or file), searching upward; None if there is none.

    The command line passes the working directory, never a scanned target: see the module docstring.
    """
    folder = Path(start).resolve()
    if not folder.is_dir():
        folder = folder.parent
    for candidate in (folder, *folder.parents):
        found = _config_in(candidate)
        if found is not None:
            return found
    return None


def _config_in(folder: Path) -> Path | None:
    own = folder / "tiecheck.toml"
    if own.is_file():
        return own
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file() and "tiecheck" in _read_toml(pyproject).get("tool", {}):
        return pyproject
    return None


def load_config(path: str | Path) -> Selection:
    """The settings of a ``tiecheck.toml`` or of a ``pyproject.toml``'s ``[tool.tiecheck]`` table."""
    path = Path(path)
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("tiecheck", {})
        where = f"{path} [tool.tiecheck]"
    else:
        table, where = data, str(path)
    if not isinstance(table, dict):
        raise SelectionError(f"{where}: expected a table")
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise SelectionError(f"{where}: unknown setting {unknown[0]!r} (expected one of {', '.join(CONFIG_KEYS)})")
    select = table.get("select")
    severity = table.get("severity", {})
    fail_on = table.get("fail-on")
    if not isinstance(severity, dict) or not all(isinstance(v, str) for v in severity.values()):
        raise SelectionError(f'{where}: severity must be a table of CODE = "error" | "warning" | "info"')
    if fail_on is not None and not isinstance(fail_on, str):
        raise SelectionError(f'{where}: fail-on must be "error", "warning" or "info"')
    return Selection.from_options(
        select=None if select is None else _strings(select, f"{where} select"),
        ignore=_strings(table.get("ignore", []), f"{where} ignore"),
        severity=severity,
        fail_on=fail_on,
        source=where,
        from_file=True,
    )


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SelectionError(f"{where}: expected a list of rule codes or prefixes")
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except tomllib.TOMLDecodeError as exc:
        raise SelectionError(f"{path}: invalid TOML ({exc})") from None
    except OSError as exc:
        raise SelectionError(f"{path}: cannot be read ({exc.strerror or exc})") from None
