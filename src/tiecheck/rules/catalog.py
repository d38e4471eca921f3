"""The rule catalogue: stable codes, names, default severities.

Codes never change meaning once released; a retired rule keeps its code reserved.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiecheck.findings import Finding, Severity
from tiecheck.live._rules import LIVE_RULES
from tiecheck.rules.docs import DOCS, RuleDoc


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    summary: str
    fixable: bool

    @property
    def doc(self) -> RuleDoc | None:
        """The long-form text (what, why, example, fix), when :mod:`tiecheck.rules.docs` has it."""
        return DOCS.get(self.code)


ERR, WARN, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

_RULES = (
    Rule("TC001", "invalid-safetensors", ERR, "A safetensors file breaks a rule of the format.", False),
    Rule("TC002", "missing-shard", ERR, "The index maps tensors to a file that does not exist.", False),
    Rule("TC003", "missing-tensor", ERR, "The index maps a tensor to a shard that does not hold it.", False),
    Rule("TC004", "unindexed-tensor", WARN, "A shard holds a tensor the index does not list; loaders ignore it.", True),
    Rule("TC005", "duplicate-key", WARN, "The same tensor name is stored in more than one file.", True),
    Rule("TC006", "index-size-mismatch", WARN, "Index total_size or total_parameters disagrees with the shards.", True),
    Rule("TC007", "orphan-shard", WARN, "A shard-named weight file that the index does not reference.", True),
    Rule("TC008", "invalid-index", ERR, "The shard index is not valid JSON, lacks weight_map, or is missing.", False),
    Rule("TC009", "invalid-config", ERR, "config.json is unreadable or invalid.", False),
    Rule("TC010", "missing-config", INFO, "No config.json beside the weights: ties guessed, dtype unchecked.", False),
    Rule("TC011", "lfs-pointer", ERR, "A weight file is a Git LFS pointer: the weights were never pulled.", False),
    Rule("TC012", "truncated-file", ERR, "A weight file is shorter than its header says: a cut-off transfer.", False),
    Rule("TC013", "empty-tensors", ERR, "Tensors with no elements where weights should be (ZeRO-3 saves).", False),
    Rule("TC014", "vocab-size-mismatch", ERR, "Embedding or head rows disagree with the config's vocab_size.", False),
    Rule("TC015", "hidden-size-mismatch", ERR, "Embedding or head columns disagree with the config's width.", False),
    Rule("TC016", "layer-count-mismatch", ERR, "Stored layers disagree with the config's layer count.", False),
    Rule("TC017", "expert-count-mismatch", ERR, "Stored experts disagree with the config's expert count.", False),
    Rule("TC018", "wrapped-names", ERR, "Tensor names carry a training wrapper's prefix or inner name.", False),
    Rule("TC019", "pruning-not-removed", ERR, "Weights stored as prune's <name>_orig and <name>_mask.", False),
    Rule("TC020", "interrupted-fix", WARN, "A pending fix journal or temp files left by an interrupted fix.", True),
    Rule("TC021", "tokenizer-beyond-embedding", WARN, "The tokenizer adds tokens the embedding has no row for.", False),
    Rule("TC101", "redundant-tied-tensor", WARN, "A stored tensor that the config ties to an identical one.", True),
    Rule("TC102", "tie-mismatch", ERR, "The config ties two tensors but their stored values differ.", False),
    Rule(
        "TC103", "missing-output-head", ERR, "Untied config and no stored head: loaders initialise it at random.", False
    ),
    Rule("TC104", "tieable-head", INFO, "Untied config, yet the head is byte-identical to the embedding.", True),
    Rule("TC105", "base-model-checkpoint", INFO, "A base model with no task head.", False),
    Rule(
        "TC106",
        "head-without-embedding",
        WARN,
        "Only the tied head is stored; the embedding it restores is missing.",
        False,
    ),
    Rule(
        "TC107",
        "partner-not-restored",
        WARN,
        "A name transformers 4 shared with a stored partner is missing; transformers 5 initialises it.",
        False,
    ),
    Rule(
        "TC108",
        "legacy-tie-overwrites-head",
        WARN,
        "Untied for transformers 5, tied for 4.x: 4.x overwrites the stored head with the embedding.",
        False,
    ),
    Rule("TC202", "duplicate-tensors", WARN, "Byte-identical tensors that no tie declares.", False),
    Rule("TC203", "constant-tensor", INFO, "A tensor whose elements are all equal (all zeros, all ones...).", False),
    Rule("TC205", "zero-filled-tail", ERR, "A weight file whose data stops part-way and is zero to the end.", False),
    Rule("TC204", "non-finite-values", ERR, "NaN or Inf in a floating tensor (checked with --deep).", False),
    Rule(
        "TC201",
        "shared-storage",
        INFO,
        "Tensors share one storage in a pickle checkpoint; safetensors cannot store that.",
        False,
    ),
    Rule(
        "TC301", "dtype-mismatch", WARN, "Weights are stored in another floating dtype than the config declares.", False
    ),
    Rule("TC304", "quantization-mismatch", ERR, "quantization_config and the stored tensors disagree.", False),
    Rule("TC303", "missing-dtype", INFO, "config.json declares no dtype: loaders guess the load precision.", False),
    Rule("TC302", "mixed-dtypes", INFO, "Floating tensors are stored in more than one dtype.", False),
    Rule("TC401", "unsafe-pickle", ERR, "A pickle imports globals that torch.load(weights_only=True) refuses.", False),
    Rule("TC402", "pickle-checkpoint", INFO, "The weights are only available as pickle; convert to safetensors.", True),
    Rule(
        "TC403", "unreadable-pickle", ERR, "A pickle weight file cannot be parsed (truncated, corrupt, legacy).", False
    ),
)

RULES: dict[str, Rule] = {r.code: r for r in _RULES}
RULES.update({r.code: Rule(r.code, r.name, r.severity, r.summary, False) for r in LIVE_RULES})
DOCS.update({r.code: r.doc for r in LIVE_RULES})


def finding(
    code: str,
    message: str,
    *,
    tensors: tuple[str, ...] | list[str] = (),
    files: tuple[str, ...] | list[str] = (),
    bytes: int = 0,  # noqa: A002 - the JSON field name
    severity: Severity | None = None,
    fixable: bool | None = None,
) -> Finding:
    rule = RULES[code]
    return Finding(
        code=code,
        name=rule.name,
        severity=rule.severity if severity is None else severity,
        message=message,
        tensors=tuple(tensors),
        files=tuple(sorted(set(files))),
        bytes=bytes,
        fixable=rule.fixable if fixable is None else fixable,
    )
