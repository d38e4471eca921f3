"""The rules of in-memory checks (state dicts and live models): codes, severities and their documentation.

They live beside the checks that raise them; the catalogue (:mod:`tiecheck.rules.catalog`) lists them
with the rest so that selection, ``explain`` and every output format know them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiecheck.findings import Severity
from tiecheck.rules.docs import RuleDoc


@dataclass(frozen=True)
class LiveRule:
    code: str
    name: str
    severity: Severity
    summary: str
    doc: RuleDoc


LIVE_RULES: tuple[LiveRule, ...] = (
    LiveRule(
        "TC501",
        "save-file-shared-memory",
        Severity.WARNING,
        "safetensors.save_file would refuse this state dict: tensors share memory.",
        RuleDoc(
            detects="Two or more tensors of a state dict overlap in memory (one storage, overlapping byte ranges), "
            "which `safetensors.torch.save_file` refuses with 'Some tensors share memory'.",
            why="A conversion or merge script that calls save_file on such a dict fails at the end of a long run; "
            "one that clones every tensor to get past the error writes the tied copy twice.",
            example="A merged Llama state dict where `lm_head.weight` is `model.embed_tokens.weight` (tied) is "
            "passed to save_file.",
            fix="Save with `save_pretrained` (it drops the declared tied names) or `safetensors.torch.save_model`, "
            "or drop the tied copy from the dict before save_file.",
        ),
    ),
    LiveRule(
        "TC502",
        "save-pretrained-refuses",
        Severity.ERROR,
        "save_pretrained would raise: tensors share memory that no declared tie explains.",
        RuleDoc(
            detects="Tensors that share memory where transformers' `save_pretrained` cannot tell which to drop: the "
            "overlap is partial, or more than one of the names is not a declared tie target.",
            why="transformers raises 'The weights trying to be saved contained shared tensors ... which are not "
            "properly defined' and writes nothing.",
            example="A custom head registered as `head.weight = embed.weight` in a class whose `_tied_weights_keys` "
            "does not name `head.weight`.",
            fix="Declare the tie in `_tied_weights_keys` (and `tie_word_embeddings`), or clone the tensor so the "
            "two names stop sharing memory.",
        ),
    ),
    LiveRule(
        "TC503",
        "dropped-not-restored",
        Severity.ERROR,
        "save_pretrained drops a tied name that the config will not tie again on load.",
        RuleDoc(
            detects="A name that `save_pretrained` leaves out because it shares memory with a kept tensor and is a "
            "declared tie target, while the config says the model is not tied.",
            why="The loader restores only ties the config turns on: the dropped tensor is initialised at random.",
            example="A model whose head was tied by hand (`lm_head.weight = embed_tokens.weight`) under "
            "`tie_word_embeddings: false`.",
            fix="Set `tie_word_embeddings` true in the config, or untie (clone) the head before saving.",
        ),
    ),
    LiveRule(
        "TC504",
        "declared-tie-broken",
        Severity.WARNING,
        "The model declares a tie, but the two parameters are separate tensors.",
        RuleDoc(
            detects="A live model whose config and `_tied_weights_keys` tie two parameters that are not one tensor "
            "(for example after assigning a new Parameter to the head, or resizing without re-tying).",
            why="save_pretrained writes both; every loader then ties them again from the source, so whatever the "
            "target held in memory is not what is loaded.",
            example="`model.lm_head.weight = nn.Parameter(model.lm_head.weight.clone())` after loading a tied Gemma.",
            fix="Call `model.tie_weights()` (or set `tie_word_embeddings` false if the head is meant to differ).",
        ),
    ),
    LiveRule(
        "TC505",
        "undeclared-tie",
        Severity.WARNING,
        "One parameter is reachable under two names, but no tie declares it.",
        RuleDoc(
            detects="Two parameter names of a live model that are one tensor, with no `_tied_weights_keys` entry "
            "(or a config flag that turns it off) covering them.",
            why="save_pretrained cannot drop either name on purpose: it refuses, or writes a checkpoint that the "
            "loader reads untied; the model trained tied and loads untied.",
            example="A custom model that shares its input embedding with its output layer by assignment only.",
            fix="Declare the tie (`_tied_weights_keys` and `tie_word_embeddings`), or clone the parameter.",
        ),
    ),
    LiveRule(
        "TC506",
        "module-registered-twice",
        Severity.INFO,
        "One module is registered under two names (a tie through a shared module).",
        RuleDoc(
            detects="A module object registered at two places of a live model (OLMo's `ff_out = wte`), so every "
            "parameter it holds has two names.",
            why="Tools that look for tied parameters pairwise, and loaders that rebuild the model from code, may "
            "not see the tie; the checkpoint then depends on which loader built the model.",
            example="`self.transformer.ff_out = self.transformer.wte` in a custom model.",
            fix="Tie the parameter instead of the module and declare it in `_tied_weights_keys`.",
        ),
    ),
)
