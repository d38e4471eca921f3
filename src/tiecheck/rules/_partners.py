"""TC107: a name transformers 4 shared with a partner whatever the tie flag, which 5.x restores only when tied.

transformers 4 built some pairs as one Parameter in the module's ``__init__`` (BERT's ``cls.predictions.decoder.bias``
and ``cls.predictions.bias``), so its ``save_pretrained`` wrote one name even for an untied model; transformers 5
declares the pair in ``_tied_weights_keys``, governed by the flag. The pairs are ``unconditional`` in
``ties/data/loaders.json`` (scripts/derive_unconditional_ties.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from tiecheck.findings import Finding
from tiecheck.rules.base import ScanContext, human_bytes
from tiecheck.rules.catalog import finding
from tiecheck.ties.known import LEGACY, removed
from tiecheck.ties.loaders import LOADERS, loader_table, outcomes, with_loaders
from tiecheck.ties.resolve import architecture_class


def missing_partner(ctx: ScanContext) -> Iterator[Finding]:
    """A name transformers 4 restored from a partner whatever the tie flag, and 5.x restores only when tied."""
    config = ctx.checkpoint.config
    names = set(ctx.tensors)
    cls = architecture_class(config, names)
    if config is None or cls is None or cls.name not in config.architectures or removed(cls):
        return  # (a class transformers 5 removed: it loads with 4.x alone, which restores the name)
    for target, source in loader_table().unconditional.get(cls.name, ()):
        if ctx.listed(target) or source not in ctx.tensors:
            continue
        declared = next((t for t in cls.ties if t.target == target and t.source == source), None)
        if declared is None:
            continue  # 5.x declares no such tie: whether it still has that parameter at all is not known
        flag = config.tie_levels.get(declared.level)
        if flag is None:
            flag = config.tie_word_embeddings
        if flag is not False:
            continue  # tied for transformers 5 too (it restores the name from its partner), or not known
        stored = ctx.tensors[source]
        yield finding(
            "TC107",
            with_loaders(
                f"{target} is not stored, but {source} is: transformers {LEGACY} shared the two in one parameter "
                f"whatever tie_word_embeddings says, so its save_pretrained wrote one name; transformers >= 5 "
                f"restores {target} from {source} only when the config ties them, and here it does not "
                f"({config.tie_key} is false: {config.tie_basis}): it initialises {target} and the outputs "
                f"change. Write {source}'s bytes under {target} as well ({human_bytes(stored.nbytes)}).",
                outcomes(
                    dict.fromkeys(LOADERS, "untied-partner-absent"),
                    cls.name,
                ),
            ),
            tensors=[target, source],
            files=[stored.file],
            bytes=stored.nbytes,
        )
