"""``scan_state_dict``: what the savers and loaders will do with an in-memory state dict.

Training, merge and conversion code holds a ``dict[str, Tensor]`` before it writes anything. The same
rules that scan files run on it (it is laid out as one virtual file, see :mod:`tiecheck.live._memory`),
and two questions only memory can answer are added: which names share memory, and therefore what
``safetensors.torch.save_file`` and transformers' ``save_pretrained`` will write, drop or refuse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tiecheck.checkpoint import Checkpoint
from tiecheck.errors import FormatError, TiecheckError
from tiecheck.findings import Finding
from tiecheck.formats.jsonfiles import parse_config
from tiecheck.live._memory import MemoryStore, lay_out
from tiecheck.live._sharing import (
    Area,
    SaveOutcome,
    relation,
    safetensors_save_file,
    sharing_groups,
    transformers_save_pretrained,
)
from tiecheck.rules.catalog import finding
from tiecheck.scan import Report, scan_checkpoint
from tiecheck.ties.resolve import resolve_ties


@dataclass(frozen=True)
class SharedStorage:
    """Names that view one storage, and how their byte ranges relate."""

    names: tuple[str, ...]
    relation: str
    """``identical`` (aliases of the same bytes), ``overlapping`` or ``disjoint`` views."""
    device: str


@dataclass(frozen=True)
class StateDictReport:
    """The outcome of :func:`scan_state_dict`."""

    findings: tuple[Finding, ...]
    """The checkpoint rules' findings on the dict, then the memory-sharing ones (TC501-TC503)."""
    shared: tuple[SharedStorage, ...]
    save_file: SaveOutcome
    """What ``safetensors.torch.save_file`` does: it raises for every group in ``refused``."""
    save_pretrained: SaveOutcome | None
    """What transformers 5's ``save_pretrained`` does; None when no tie declaration is known (no config)."""
    restored: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Names ``save_pretrained`` drops, each with the kept name a loader ties it from (when the config ties)."""
    notes: tuple[str, ...] = ()
    """Limits of what was checked (meta tensors: identity only; DTensor: the local shard)."""
    report: Report | None = None
    """The full scan report of the dict as a checkpoint; None when its bytes are not readable (meta tensors)."""


def _config_text(config: object) -> str | None:
    if config is None:
        return None
    if isinstance(config, str | Path):
        path = Path(config)
        path = path / "config.json" if path.is_dir() else path
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TiecheckError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    if isinstance(config, Mapping):
        return json.dumps(dict(config), default=str)
    to_dict = getattr(config, "to_dict", None)  # a transformers PretrainedConfig
    if callable(to_dict):
        return json.dumps(to_dict(), default=str)
    raise TiecheckError(f"config must be a PretrainedConfig, a dict or a path, not {type(config).__name__}")


def scan_state_dict(
    state_dict: Mapping[str, Any],
    config: object = None,
    *,
    tied_keys: Iterable[str] | None = None,
) -> StateDictReport:
    """Check an in-memory state dict of torch tensors or numpy arrays, before it is saved.

    ``config``: a transformers ``PretrainedConfig``, a ``config.json`` dict, or a path to one (or to its
    folder). It decides the tie rules, as for a checkpoint on disk. ``tied_keys``: the tie targets the model
    declares (transformers' ``_tied_weights_keys`` keys, prefixed); by default those of the config's
    architecture. Nothing is copied: tensor bytes are read where they are, on CPU.
    """
    layout = lay_out(state_dict)
    text = _config_text(config)
    try:
        model_config = parse_config(text) if text is not None else None
    except FormatError as exc:
        raise TiecheckError(f"config: {exc.detail}") from None
    checkpoint = Checkpoint(
        location="<state dict>",
        files=(layout.file,),
        index=None,
        config=model_config,
        config_file="config.json" if model_config is not None else None,
    )
    notes = list(layout.notes)

    report: Report | None = None
    if layout.readable:
        report = scan_checkpoint(checkpoint, MemoryStore(layout), target="<state dict>")
        ties = report.ties
    else:
        notes.append("tensors not in CPU memory (meta or another device): sharing checked by identity only")
        ties = resolve_ties(checkpoint)

    if tied_keys is None and checkpoint.config is not None:
        tied_keys = [re.escape(n) for tie in ties for n in tie.group.restored]
    save_file = safetensors_save_file(layout.areas)
    save_pretrained = None if tied_keys is None else transformers_save_pretrained(layout.areas, tied_keys)

    restored: dict[str, str] = {}
    findings = list(report.findings) if report is not None else []
    if model_config is None:  # no config was given: an in-memory dict has no config.json to be missing
        findings = [f for f in findings if f.code != "TC010"]
    findings.extend(_save_file_findings(save_file))
    if save_pretrained is not None:
        tie_of = {n: tie for tie in ties for n in tie.group.restored}
        for name in save_pretrained.dropped:
            tie = tie_of.get(name)
            if tie is not None and tie.tied:
                restored[name] = tie.group.kept
            else:
                reason = "the config does not tie it" if tie is not None else "no tie of this architecture names it"
                findings.append(
                    finding(
                        "TC503",
                        f"save_pretrained leaves out {name!r} (it shares memory with a kept tensor), but {reason}: "
                        "the loader initialises it at random.",
                        tensors=[name],
                    )
                )
        findings.extend(
            finding(
                "TC502",
                f"save_pretrained raises for {', '.join(map(repr, group))}: they share memory and no declared tie "
                "says which to keep.",
                tensors=list(group),
            )
            for group in save_pretrained.refused
        )
    return StateDictReport(
        findings=tuple(findings),
        shared=tuple(_shared(layout.areas)),
        save_file=save_file,
        save_pretrained=save_pretrained,
        restored=MappingProxyType(restored),
        notes=tuple(notes),
        report=report,
    )


def _save_file_findings(outcome: SaveOutcome) -> Iterable[Finding]:
    for group in outcome.refused:
        yield finding(
            "TC501",
            f"safetensors.save_file raises 'Some tensors share memory' for {', '.join(map(repr, group))}; "
            "save_pretrained or safetensors.torch.save_model write one copy.",
            tensors=list(group),
        )


def _shared(areas: Iterable[Area]) -> Iterable[SharedStorage]:
    for group in sharing_groups(areas):
        yield SharedStorage(tuple(a.name for a in group), relation(group), group[0].device)
