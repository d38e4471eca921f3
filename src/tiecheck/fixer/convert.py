"""``fix --to-safetensors``: the plan that converts pickle weights to safetensors shards, without unpickling.

A function of the planner (:class:`tiecheck.fixer.plan._Planner`) once its findings are handled:
the tied aliases it dropped are left out, every other tensor's byte range is copied.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

from tiecheck.checkpoint import FileFormat, TensorRecord
from tiecheck.fixer.plan import Action, ActionKind, KeptNote, OutputFile, Plan, RefusedError, _Planner, finding_key
from tiecheck.rules.base import human_bytes
from tiecheck.rules.pickle import too_expanded


def conversion_plan(self: _Planner) -> Plan:
    """``--to-safetensors``: one safetensors shard per pickle file, byte ranges copied, no unpickling.

    Names that alias one storage are stored once when a tie restores the others (under the
    name the tie table keeps, as save_pretrained does); otherwise each name gets its own copy,
    since safetensors cannot alias and no loader would restore it.
    """
    ckpt = self.ckpt
    for tie in self.report.ties:
        kept = self.tensors.get(tie.group.kept)
        for name in tie.group.restored:
            alias = self.tensors.get(name)
            if tie.tied and kept is not None and alias is not None and alias.aliases(kept):
                self._drop(alias, kept, via_tie=True, code="TC201")
    for f in self.report.findings:
        if f.code == "TC201":
            kept_twice = [n for n in f.tensors if n in self.tensors and n not in self.dropped_names()]
            if len(kept_twice) > 1:
                why = "stored once per name: safetensors cannot alias storages, and no tie restores them"
                self.kept += [KeptNote(n, "TC201", why) for n in kept_twice[1:]]
        if f.code in ("TC201", "TC402"):
            self.fixed.add(finding_key(f))

    shards = [
        (f.name, tuple(t for t in f.tensors if (t.file, t.name) not in self.drops))
        for f in ckpt.files
        if f.format is FileFormat.PICKLE
    ]
    shards = [(name, tensors) for name, tensors in shards if tensors]
    _refuse_expanded([t for _, tensors in shards for t in tensors])
    if not shards:
        raise RefusedError(f"{ckpt.location}: the conversion would leave no tensor at all")
    sharded = ckpt.index is not None or len(shards) > 1
    total = len(shards)
    names = (
        [f"model-{i:05d}-of-{total:05d}.safetensors" for i in range(1, total + 1)] if sharded else ["model.safetensors"]
    )
    files = tuple(
        OutputFile(final, tensors, MappingProxyType({"format": "pt"}))
        for (_, tensors), final in zip(shards, names, strict=True)
    )
    index_name = "model.safetensors.index.json" if sharded else None
    index_text = _conversion_index(self, files) if sharded else None
    removed = sorted({f.name for f in ckpt.files} | ({ckpt.index.name} if ckpt.index else set()))
    add = self.actions.append
    for d in sorted(self.drops.values(), key=lambda d: (d.record.file, d.record.start)):
        if d.code == "TC201":
            why = f"shares its storage with {d.partner.name}, which the tie restores it from: stored once"
            add(Action(ActionKind.DROP_TENSOR, d.record.file, why, d.record.name, codes=("TC201",)))
        else:
            why = (
                f"tied to {d.partner.name} and byte-identical: loaders restore it"
                if d.via_tie
                else f"a second copy; loaders read the identical one in {d.partner.file}"
            )
            add(Action(ActionKind.DROP_TENSOR, d.record.file, why, d.record.name, d.record.nbytes, codes=(d.code,)))
    for (source, tensors), out in zip(shards, files, strict=True):
        why = f"{len(tensors)} tensor(s) converted without unpickling: byte ranges copied and hashed"
        add(Action(ActionKind.CONVERT_SHARD, source, why, new_name=out.name, codes=("TC402",)))
    if index_name is not None:
        add(Action(ActionKind.REWRITE_INDEX, index_name, "the safetensors index of the converted shards"))
    for name in removed:
        add(Action(ActionKind.REMOVE_SHARD, name, "replaced by the safetensors conversion (verified first)"))
    config_text = self._config_text()
    for edit in self.config_edits:
        why = f"set {edit.key} to {json.dumps(edit.value)}: {edit.reason}"
        add(Action(ActionKind.EDIT_CONFIG, ckpt.config_file or "config.json", why, codes=("TC104",)))
    return Plan(
        location=ckpt.location,
        options=self.options,
        files=files,
        index_name=index_name,
        index_text=index_text,
        config_name=ckpt.config_file if config_text is not None else None,
        config_text=config_text,
        removed=tuple(removed),
        dropped=tuple(self.drops.values()),
        actions=tuple(self.actions),
        kept=tuple(self.kept),
        fixed=frozenset(self.fixed),
        old_index_files=frozenset(removed),
    )


def _refuse_expanded(tensors: list[TensorRecord]) -> None:
    """Refuse views whose elements overlap in their storage beyond what a buffer takes (TC402's rule).

    safetensors cannot store a stride, so a conversion writes each element: ``torch.zeros(1).expand(2**40)``,
    four bytes in the pickle, would be four terabytes. A hostile checkpoint must not make the fix fill a disk.
    """
    for t in tensors:
        if too_expanded(t):
            raise RefusedError(
                f"{t.file}: {t.name!r} is a view whose {t.numel:,} elements overlap in their storage (an expanded "
                f"tensor): converted it would take {human_bytes(t.nbytes)}. tiecheck does not write more than a "
                "checkpoint holds; if it is meant to be that large, save it with .contiguous() first"
            )


def _conversion_index(self: _Planner, files: tuple[OutputFile, ...]) -> str:
    metadata: dict[str, Any] = {}
    index = self.ckpt.index
    if index is not None:
        old = json.loads(self.store.read_text(index.name)).get("metadata")
        metadata = dict(old) if isinstance(old, dict) else {}
    metadata["total_size"] = sum(t.nbytes for f in files for t in f.tensors)
    if "total_parameters" in metadata:
        metadata["total_parameters"] = sum(t.numel for f in files for t in f.tensors)
    weight_map = {t.name: f.name for f in files for t in f.tensors}
    return json.dumps({"metadata": metadata, "weight_map": dict(sorted(weight_map.items()))}, indent=2) + "\n"
