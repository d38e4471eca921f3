"""Quantisation rule (TC304): does ``quantization_config`` agree with the tensors stored?

Each quantiser stores its weights under names of its own (GPTQ and AWQ: ``qweight``/``qzeros``/
``scales``; gpt-oss MXFP4: ``_blocks``/``_scales``; bitsandbytes: ``absmax``, ``quant_state``, ``SCB``;
compressed-tensors: ``weight_packed``/``weight_scale``). A config that names a format whose loader can
only read pre-quantised tensors, over plain weights, loads with missing keys and random weights; tensors
in a quantised layout with no config to say so are ignored as unexpected keys. Only formats whose names
are certain are checked: a quantiser that can quantise at load time (bitsandbytes, fp8) is never flagged
for plain weights.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tiecheck.findings import Finding
from tiecheck.rules.base import ScanContext
from tiecheck.rules.catalog import finding

#: Tensor-name endings that only a quantiser writes, by the quant_method that reads them.
SIGNATURES: dict[str, re.Pattern[str]] = {
    "gptq": re.compile(r"\.(qweight|qzeros)$"),
    "awq": re.compile(r"\.(qweight|qzeros)$"),
    "mxfp4": re.compile(r"_blocks$"),
    "bitsandbytes": re.compile(r"\.(absmax|quant_map|quant_state\.bitsandbytes__(nf4|fp4)|SCB)$"),
    "compressed-tensors": re.compile(r"\.(weight_packed|weight_scale|weight_zero_point)$"),
}
#: Methods whose loaders cannot quantise plain weights at load: their config over plain weights is broken.
PREQUANTISED_ONLY = frozenset({"gptq", "awq", "mxfp4"})
#: Names no unquantised checkpoint uses, whatever the architecture: evidence of a quantised layout.
_ANY_QUANTISED = re.compile(r"\.(qweight|qzeros|weight_packed|absmax|quant_state\.bitsandbytes__(nf4|fp4)|SCB)$")

#: Quantisers' bookkeeping tensors: codebooks, stored shapes, group indices, symmetric zero points. They
#: repeat across layers and are constant by construction (bitsandbytes' NF4 code book is the same 16
#: numbers in every layer; GPTQ's g_idx is ``i // group_size`` without act-order), so byte-identical
#: or constant ones say nothing about a broken save or an untrained model.
BOOKKEEPING = re.compile(
    r"\.(quant_map|nested_quant_map|quant_state\.bitsandbytes__\w+|g_idx|qzeros|"
    r"weight_shape|weight_zero_point|weight_g_idx|input_zero_point|output_zero_point)$"
)

_LISTED = 3


def check_quantization(ctx: ScanContext) -> Iterator[Finding]:
    config = ctx.checkpoint.config
    names = sorted(ctx.tensors)
    if config is None:
        return
    method = config.quant_method
    if method in PREQUANTISED_ONLY and not any(SIGNATURES[method].search(n) for n in names):
        yield finding(
            "TC304",
            f"quantization_config names {method}, but no tensor is stored in its layout (no "
            f"{SIGNATURES[method].pattern}): the weights are plain. Loaders look for the quantised tensors, report "
            "them missing and initialise those layers at random. Remove quantization_config, or save the "
            "quantised weights.",
            files=[ctx.checkpoint.config_file] if ctx.checkpoint.config_file else [],
        )
    if method is None:
        quantised = [n for n in names if _ANY_QUANTISED.search(n)]
        if quantised:
            more = f" and {len(quantised) - _LISTED} more" if len(quantised) > _LISTED else ""
            listed = ", ".join(quantised[:_LISTED]) + more
            yield finding(
                "TC304",
                f"{len(quantised)} tensors are stored in a quantised layout ({listed}) but config.json has no "
                "quantization_config: loaders treat them as unexpected keys and initialise the layers they "
                "replace at random. Restore the quantization_config the quantiser wrote.",
                tensors=quantised,
                files=sorted({ctx.tensors[n].file for n in quantised}),
            )
    yield from _quantised_tied_head(ctx)


def _quantised_tied_head(ctx: ScanContext) -> Iterator[Finding]:
    """A tied head stored quantised while its embedding is not: the tie has nothing to share."""
    for tie in ctx.ties:
        head = tie.group.head
        if not tie.tied or head is None or not head.endswith(".weight") or tie.group.kept not in ctx.tensors:
            continue
        module = head.removesuffix(".weight")
        quantised = [n for n in ctx.tensors if n.startswith(module + ".") and _ANY_QUANTISED.search(n)]
        if quantised:
            yield finding(
                "TC304",
                f"The config ties {head} to {tie.group.kept}, but the head is stored quantised ({quantised[0]}) and "
                "the embedding is not: loaders either drop the quantised head for the embedding or fail to tie "
                "them. Quantise without the head (most quantisers skip lm_head), or untie it in the config.",
                tensors=[*quantised, tie.group.kept],
                files=sorted({ctx.tensors[n].file for n in quantised}),
            )
