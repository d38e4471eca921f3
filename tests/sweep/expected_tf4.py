"""What the sweep may find on clean saves written by transformers 4.57 (tests/sweep/test_arch_sweep_tf4.py).

The builder takes its expectations from transformers 4.57's own objects, so a finding on a clean 4.57 save is
either a tiecheck false alarm or a checkpoint transformers 5 loads otherwise than 4.57 did. Each group below
was checked by loading the saves with transformers 5.23 (``from_pretrained(..., output_loading_info=True)``);
docs/transformers-4-saves.md gives the detail. A model type not listed must scan clean; a listed one may only
carry the codes listed for it.
"""

from __future__ import annotations

#: Untied masked-LM heads: 4.x shared the decoder bias with the head's bias whatever the flag and stored one
#: name; transformers 5 initialises the other (missing_keys names it).
_DECODER_BIAS = {
    "albert", "bert", "bert-generation", "big_bird", "blip", "camembert", "data2vec-text", "deberta", "deberta-v2",
    "ernie", "fnet", "ibert", "layoutlm", "longformer", "megatron-bert", "mobilebert", "mpnet", "mra",
    "nystromformer", "roberta", "roberta-prelayernorm", "roc_bert", "roformer", "squeezebert", "tapas",
    "visual_bert", "xlm-roberta", "xlm-roberta-xl", "xmod", "yoso",
}  # fmt: skip
#: A head 4.57 dropped because it tied it, which transformers 5 does not tie for that config (a flag read at
#: another level, or no declared tie): missing_keys names it, it starts random. RemBERT's tied save is
#: artificial (4.57's config class forces the flag false on load). GPTSan-Japanese, gone from transformers 5,
#: is judged by name patterns (a warning at most); 4.57's own untied save loses its head.
_HEAD_LOST_UNDER_5 = {
    "aria", "bigbird_pegasus", "fsmt", "gptsan-japanese", "luke", "moshi", "pop2piano",
    "qwen2_audio", "reformer", "rembert", "video_llava", "vipllava", "voxtral",
}  # fmt: skip

ALLOWED_ON_CLEAN_SAVES: dict[str, frozenset[str]] = {
    **dict.fromkeys(_DECODER_BIAS, frozenset({"TC107"})),
    **dict.fromkeys(_HEAD_LOST_UNDER_5, frozenset({"TC103"})),
    # CPM-Ant: the tied head is lost as above; the untied one no longer fits (transformers 5 refuses it).
    "cpmant": frozenset({"TC103", "TC014"}),
    # LongCat-Flash: transformers 5 refuses the 4.57 expert layout with a size mismatch.
    "longcat_flash": frozenset({"TC017"}),
}
