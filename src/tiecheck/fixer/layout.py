"""The planner's second half: from the decided drops, adds and edits to the output layout and its actions.

:class:`_Layout` is a base of :class:`tiecheck.fixer.plan._Planner`, which fills in the state
declared here while it handles the findings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tiecheck.checkpoint import Checkpoint, TensorRecord
from tiecheck.fixer.jsonedit import set_value
from tiecheck.fixer.model import (
    Action,
    ActionKind,
    ConfigEdit,
    Dropped,
    FindingKey,
    KeptNote,
    Options,
    OutputFile,
    Plan,
    RefusedError,
)
from tiecheck.formats.jsonfiles import parse_config
from tiecheck.io.source import CheckpointStore
from tiecheck.loader import SHARD_PATTERN


class _Layout:
    """The state the deciding half fills in (see :class:`tiecheck.fixer.plan._Planner`)."""

    ckpt: Checkpoint
    store: CheckpointStore
    options: Options
    drops: dict[tuple[str, str], Dropped]
    adds: dict[str, str]
    kept: list[KeptNote]
    fixed: set[FindingKey]
    config_edits: list[ConfigEdit]
    orphans_indexed: list[tuple[str, tuple[TensorRecord, ...], Mapping[str, str]]]
    orphans_deleted: list[tuple[str, str]]
    actions: list[Action]

    def _layout(self) -> Plan:
        ckpt = self.ckpt
        index = ckpt.index
        drops = self.drops
        sources: list[tuple[str, tuple[TensorRecord, ...], Mapping[str, str]]] = [
            (f.name, f.tensors, f.metadata) for f in ckpt.files
        ]
        sources += self.orphans_indexed
        kept_files: list[tuple[str, tuple[TensorRecord, ...], Mapping[str, str], bool]] = []
        removed: list[str] = []
        for name, tensors, metadata in sources:
            kept = tuple(t for t in tensors if (t.file, t.name) not in drops)
            if kept:
                kept_files.append((name, kept, metadata, len(kept) == len(tensors)))
            else:
                removed.append(name)
        if not kept_files:
            raise RefusedError(f"{ckpt.location}: the fix would leave no tensor at all")

        names = self._final_names([n for n, *_ in kept_files], index is not None)
        files = tuple(
            OutputFile(final, kept, MappingProxyType(dict(metadata)), source=name if whole else None)
            for (name, kept, metadata, whole), final in zip(kept_files, names, strict=True)
        )
        finals = {f.name for f in files}
        removed += [name for name, _ in self.orphans_deleted]
        removed += [src for (src, *_), final in zip(kept_files, names, strict=True) if src != final]
        removed = sorted({r for r in removed if r not in finals})

        index_text = self._index_text(files) if index is not None else None
        config_text = self._config_text()
        old_index_files = frozenset(index.weight_map.values()) if index else frozenset(f.name for f in ckpt.files)
        self._describe(files, removed, index_text, config_text)
        return Plan(
            location=ckpt.location,
            options=self.options,
            files=files,
            index_name=index.name if index else None,
            index_text=index_text,
            config_name=ckpt.config_file if config_text is not None else None,
            config_text=config_text,
            removed=tuple(removed),
            dropped=tuple(drops.values()),
            actions=tuple(self.actions),
            kept=tuple(self.kept),
            fixed=frozenset(self.fixed),
            old_index_files=old_index_files,
            deleted_orphans=frozenset(name for name, _ in self.orphans_deleted),
        )

    def dropped_names(self) -> set[str]:
        return {name for _, name in self.drops}

    def _final_names(self, names: list[str], indexed: bool) -> list[str]:
        """Renumber ``prefix-0000i-of-0000N`` shards when their count changed; keep other names."""
        matches = [SHARD_PATTERN.match(n) for n in names]
        if not indexed or not all(matches):
            return names
        prefixes = {m.group("prefix") for m in matches if m}
        if len(prefixes) != 1:
            return names
        width = max(len(m.group("part")) for m in matches if m)
        prefix = prefixes.pop()
        total = len(names)
        return [f"{prefix}-{i:0{width}d}-of-{total:0{width}d}.safetensors" for i in range(1, total + 1)]

    def _index_text(self, files: tuple[OutputFile, ...]) -> str:
        index = self.ckpt.index
        assert index is not None
        document: dict[str, Any] = json.loads(self.store.read_text(index.name))
        weight_map = {t.name: f.name for f in files for t in f.tensors}
        metadata = document.get("metadata")
        metadata = dict(metadata) if isinstance(metadata, dict) else {}
        metadata["total_size"] = sum(t.nbytes for f in files for t in f.tensors)
        if "total_parameters" in metadata:
            metadata["total_parameters"] = sum(t.numel for f in files for t in f.tensors)
        document["metadata"] = metadata
        document["weight_map"] = dict(sorted(weight_map.items()))
        return json.dumps(document, indent=2) + "\n"

    def _config_text(self) -> str | None:
        if not self.config_edits:
            return None
        assert self.ckpt.config_file is not None
        text = self.store.read_text(self.ckpt.config_file)
        for edit in self.config_edits:
            text = set_value(text, edit.key, edit.value)
        if parse_config(text).tie_word_embeddings is not True:
            raise RefusedError(f"{self.ckpt.config_file}: editing the tie flag did not make the config tie")
        return text

    def _describe(
        self, files: tuple[OutputFile, ...], removed: list[str], index_text: str | None, config_text: str | None
    ) -> None:
        ckpt = self.ckpt
        add = self.actions.append
        for d in sorted(self.drops.values(), key=lambda d: (d.record.file, d.record.start)):
            why = {
                "TC101": f"tied to {d.partner.name} and byte-identical: loaders restore it",
                "TC104": f"byte-identical to {d.partner.name}; the config edit ties them",
                "TC005": f"a second copy; loaders read the identical one in {d.partner.file}",
                "TC004": f"not indexed, and tied to the identical {d.partner.name}",
            }[d.code]
            add(Action(ActionKind.DROP_TENSOR, d.record.file, why, d.record.name, d.record.nbytes, codes=(d.code,)))
        for name, file in sorted(self.adds.items()):
            add(
                Action(
                    ActionKind.ADD_TO_INDEX,
                    file,
                    "stored but not indexed: loaders never read it",
                    name,
                    codes=("TC004",),
                )
            )
        indexed_orphans = {o for o, *_ in self.orphans_indexed}
        for f in files:
            if f.source == f.name:
                continue
            if f.source is not None:
                codes: tuple[str, ...]
                if f.source in indexed_orphans:
                    why, codes = "an orphan whose tensors are stored nowhere else: indexed", ("TC007",)
                else:
                    why, codes = "shard numbering follows the new shard count", ()
                add(Action(ActionKind.RENAME_SHARD, f.source, why, new_name=f.name, codes=codes))
            else:
                origin = f.tensors[0].file
                why = "rewritten without the dropped tensors (byte ranges streamed)"
                add(Action(ActionKind.REWRITE_SHARD, origin, why, new_name=f.name if f.name != origin else None))
        orphans = dict(self.orphans_deleted)
        sources = {f.source for f in files}
        for name, why in self.orphans_deleted:
            add(Action(ActionKind.DELETE_ORPHAN, name, why, bytes_saved=self._size(name), codes=("TC007",)))
        for name in removed:
            if name not in orphans and name not in sources:
                add(Action(ActionKind.REMOVE_SHARD, name, "every tensor in it was dropped"))
        # Compared as data: a differently formatted but equal index is not worth a rewrite.
        if ckpt.index is not None and index_text and json.loads(index_text) != self._old_index():
            index_codes = tuple(sorted({c for c, _ in self.fixed if c in ("TC004", "TC006", "TC007")}))
            why = "weight_map and metadata.total_size describe the fixed shards"
            add(Action(ActionKind.REWRITE_INDEX, ckpt.index.name, why, codes=index_codes))
        if config_text is not None:
            for edit in self.config_edits:
                why = f"set {edit.key} to {json.dumps(edit.value)}: {edit.reason}"
                add(Action(ActionKind.EDIT_CONFIG, ckpt.config_file or "config.json", why, codes=("TC104",)))

    def _old_index(self) -> object:
        assert self.ckpt.index is not None
        return json.loads(self.store.read_text(self.ckpt.index.name))

    def _size(self, name: str) -> int:
        try:
            source = self.store.open(name)
        except OSError:
            return 0
        try:
            return source.size
        finally:
            source.close()
