"""The scan: read a checkpoint's headers, run every check, summarise."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tiecheck.checkpoint import Checkpoint
from tiecheck.content import ContentReader, ProgressSink, TensorContent
from tiecheck.errors import TiecheckError
from tiecheck.findings import Finding, Severity
from tiecheck.io.source import CheckpointStore
from tiecheck.loader import load_checkpoint, store_for
from tiecheck.rules import CHECKS, ScanContext
from tiecheck.ties.resolve import ResolvedTie, resolve_ties

#: Load errors for which ``tiecheck fix`` refuses a checkpoint (the one definition: ``fixer.plan.BLOCKING`` is this
#: set): with one of them, no finding is marked fixable, since ``fix`` would not act.
BLOCKS_FIX = frozenset({"TC001", "TC002", "TC003", "TC008", "TC009", "TC011", "TC012"})

#: How much tensor data a scan reads (``content=``): every candidate in full, sampled blocks, or nothing.
CONTENT_MODES = ("full", "sample", "none")

#: Bytes per parameter for the load-memory estimates of the summary.
LOAD_WIDTHS = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}


@dataclass(frozen=True)
class Summary:
    """What the checkpoint holds, whatever the findings: counts, bytes, and load memory per width."""

    files: int
    tensors: int
    parameters: int
    unique_parameters: int
    bytes: int
    redundant_bytes: int
    dtypes: Mapping[str, int]
    """Stored parameters per dtype."""
    load_memory: Mapping[str, int]
    """Bytes to hold the unique parameters at each width."""


@dataclass(frozen=True)
class Transferred:
    """What a scan of a remote store cost on the network: requests made and file bytes received."""

    requests: int
    bytes: int


@dataclass(frozen=True)
class Report:
    """The outcome of a scan: the checkpoint as read, the ties that apply, the findings and a summary."""

    target: str
    checkpoint: Checkpoint
    ties: tuple[ResolvedTie, ...]
    findings: tuple[Finding, ...]
    summary: Summary
    bytes_read: int
    """Tensor bytes read to answer content questions (headers not counted)."""
    contents: Mapping[str, TensorContent] | None = None
    """With ``deep``: every tensor's content hash and NaN/Inf counts, by name (the copy a loader reads)."""
    transferred: Transferred | None = None
    """Remote stores only (``hf://``): requests and bytes this scan transferred."""

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def to_dict(self) -> dict[str, Any]:
        """This report as one entry of ``reports`` in the JSON document (``schemas/tiecheck-report.schema.json``)."""
        from tiecheck.output.json import report_dict

        return report_dict(self)

    def to_json(self) -> str:
        """The whole JSON document ``tiecheck scan -f json`` prints for this one report."""
        import json

        from tiecheck import __version__
        from tiecheck.output.json import SCHEMA_VERSION

        document = {
            "schema_version": SCHEMA_VERSION,
            "tiecheck_version": __version__,
            "reports": [self.to_dict()],
            "errors": [],
        }
        return json.dumps(document, indent=2) + "\n"

    def failed(self, fail_on: Severity = Severity.WARNING) -> bool:
        worst = self.worst()
        return worst is not None and worst >= fail_on


def scan(
    path: str | Path,
    *,
    deep: bool = False,
    progress: ProgressSink | None = None,
    rules: frozenset[str] | None = None,
    offline: bool | None = None,
    content: str | None = None,
) -> Report:
    """Scan a local checkpoint folder, ``.safetensors`` file or pickle (``.bin``/``.pt``/``.pth``) file,
    or a Hub repo as ``hf://ORG/NAME[@REVISION]`` (by range requests; the local cache when offline).

    ``deep`` reads every tensor once (hashes, NaN/Inf); otherwise only what the questions need. ``offline``:
    Hub repos from the local cache only (None: as ``HF_HUB_OFFLINE`` says). ``content``: ``"full"`` or
    ``"sample"`` or ``"none"`` (see :func:`scan_checkpoint`; None: full locally, sampled for Hub repos).
    """
    if str(path).startswith("hf://"):
        from tiecheck.io.hub import open_hub

        store: CheckpointStore = open_hub(str(path), offline=offline)
    else:
        store = store_for(path)
    return scan_store(store, target=str(path), deep=deep, progress=progress, rules=rules, content=content)


def scan_store(
    store: CheckpointStore,
    target: str | None = None,
    *,
    deep: bool = False,
    progress: ProgressSink | None = None,
    rules: frozenset[str] | None = None,
    content_reader: ContentReader | None = None,
    content: str | None = None,
) -> Report:
    """Scan any store. ``rules``: report only these codes (None: all); checks for none of them read nothing.

    ``content_reader``: a reader on ``store`` that the caller keeps open (and closes), so that what
    this scan compared and hashed is not read again (``tiecheck fix`` plans and verifies with it).
    """
    return scan_checkpoint(
        load_checkpoint(store),
        store,
        target=target,
        deep=deep,
        progress=progress,
        rules=rules,
        content_reader=content_reader,
        content=content,
    )


def scan_checkpoint(
    checkpoint: Checkpoint,
    store: CheckpointStore,
    target: str | None = None,
    *,
    deep: bool = False,
    progress: ProgressSink | None = None,
    rules: frozenset[str] | None = None,
    content_reader: ContentReader | None = None,
    content: str | None = None,
) -> Report:
    """Run every check on a checkpoint already read; ``store`` serves its tensor bytes.

    ``content``: ``"full"`` compares tied pairs byte for byte (the local default), ``"sample"`` from the
    fingerprints' sampled blocks (the default for remote stores, where bytes cost requests); findings
    confirmed only by samples say so. ``"none"`` reads no tensor byte: headers, index and config rules
    run; a tied pair stored twice is reported as not compared (a warning at most), and the duplicate and
    constant-tensor checks, which need bytes, find nothing.
    """
    tensors = checkpoint.tensor_map()
    ties = resolve_ties(checkpoint, set(tensors))
    contents = None
    if content not in (None, *CONTENT_MODES):
        raise ValueError(f"content must be one of {', '.join(CONTENT_MODES)}, not {content!r}")
    if content == "none" and deep:
        raise TiecheckError("--deep reads every tensor and --content none reads none: choose one")
    exact = content not in ("sample", "none") if content is not None else not getattr(store, "remote", False)
    reader = (
        ContentReader(store, progress=progress, exact=exact, read=content != "none")
        if content_reader is None
        else contextlib.nullcontext(content_reader)
    )
    with reader as active:
        if deep:  # one pass first, so that tie questions are answered from its hashes where they can be
            pairs = [
                (tensors[tie.group.kept], tensors[name])
                for tie in ties
                for name in tie.group.restored
                if tie.group.kept in tensors and name in tensors
            ]
            analysis = active.analyse(tensors.values(), deep=True, pairs=pairs)
            contents = MappingProxyType(
                {name: c for name, t in sorted(tensors.items()) if (c := analysis.content(t)) is not None}
            )
        ctx = ScanContext(checkpoint, tensors, ties, active, deep=deep, rules=rules)
        findings = [_sampled_note(f, active.sampled) for check in CHECKS for f in check(ctx)]
        bytes_read = active.bytes_read
        unseen = active.unseen
    findings.sort(key=lambda f: (-f.severity, f.code, f.files, f.tensors))
    if any(f.code in BLOCKS_FIX for f in findings):  # `fix` refuses the whole checkpoint: nothing is fixable
        findings = [dataclasses.replace(f, fixable=False) if f.fixable else f for f in findings]
    # The summary describes the checkpoint, whatever is reported: it is computed from every finding.
    summary = _summarise(checkpoint, findings, unseen)
    reported = findings if rules is None else [f for f in findings if f.code in rules]
    return Report(
        target=target or store.location,
        checkpoint=checkpoint,
        ties=ties,
        findings=tuple(reported),
        summary=summary,
        bytes_read=bytes_read,
        contents=contents,
        transferred=_transferred(store),
    )


def _summarise(checkpoint: Checkpoint, findings: list[Finding], unseen: set[frozenset[str]]) -> Summary:
    tensors = checkpoint.stored_once()  # a pickle storage shared by several names is stored once
    by_name = checkpoint.tensor_map()
    parameters = sum(t.numel for t in tensors)
    redundant_params = 0
    redundant_bytes = 0
    for f in findings:
        if f.code == "TC101" and frozenset(f.tensors[:2]) not in unseen:  # not compared: not known redundant
            redundant_params += by_name[f.tensors[0]].numel
            redundant_bytes += f.bytes
        elif f.code == "TC005":
            copies = sum(1 for t in tensors if t.name == f.tensors[0]) - 1
            redundant_params += by_name[f.tensors[0]].numel * copies
            redundant_bytes += f.bytes
    unique = parameters - redundant_params
    dtypes: Counter[str] = Counter()
    for t in tensors:
        dtypes[t.dtype] += t.numel
    return Summary(
        files=len(checkpoint.files),
        tensors=len(checkpoint.tensors),
        parameters=parameters,
        unique_parameters=unique,
        bytes=sum(t.nbytes for t in tensors),
        redundant_bytes=redundant_bytes,
        dtypes=MappingProxyType(dict(sorted(dtypes.items()))),
        load_memory=MappingProxyType({k: unique * w for k, w in LOAD_WIDTHS.items()}),
    )


def _transferred(store: CheckpointStore) -> Transferred | None:
    counters = getattr(store, "transfer", None)  # remote stores count their requests
    return None if counters is None else Transferred(counters.requests, counters.bytes)


def _sampled_note(found: Finding, sampled: set[frozenset[str]]) -> Finding:
    """Say so when a finding rests on a pair compared by samples, not byte for byte."""
    if not any(pair <= set(found.tensors) for pair in sampled):
        return found
    note = (
        " Confirmed by sampled blocks, not byte for byte (a remote scan reads samples): "
        "`--content full` compares them in full."
    )
    return dataclasses.replace(found, message=found.message + note)
