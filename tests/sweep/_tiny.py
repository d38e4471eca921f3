"""Shrink any transformers config to a tiny, still consistent one (generic: no per-architecture table).

Walks the config and its sub-configs (``text_config``, ``vision_config``, ``backbone_config``...) and sets the
sizes a model's parameter count depends on to small values: widths, layers, heads, feed-forward sizes, vocab,
image/patch sizes, experts. Lists indexed by layer are cut to the new layer count. Three strengths are tried by
the builder, strongest first, because some architectures tie sizes together in ways a generic rule can break.
Imports nothing from tiecheck: this module builds the artefacts tiecheck is judged on.
"""

from __future__ import annotations

from typing import Any

HIDDEN = 64
HEADS = 2
HEAD_DIM = HIDDEN // HEADS
FFN = 128
LAYERS = 2
VOCAB = 128

_WIDTH = {
    "hidden_size",
    "d_model",
    "n_embd",
    "n_embed",
    "embed_dim",
    "hidden_dim",
    "dim",
    "d_embed",
    "embedding_size",
    "embedding_dim",
    "word_embed_proj_dim",
    "model_dim",
    "projection_dim",
    "proj_dim",
    "text_embed_dim",
    "vision_embed_dim",
    "d_inner_hid",
    "encoder_hidden_size",
    "decoder_hidden_size",
    "hidden_dim_size",
    "mm_hidden_size",
    "projector_hidden_size",
    "kv_lora_rank",
    "q_lora_rank",
    "latent_dim",
    "d_latent",
    "output_dim",
    "out_hidden_size",
    "vision_hidden_size",
    "text_hidden_size",
    "audio_hidden_size",
    "cross_attention_hidden_size",
    "speaker_embedding_dim",
    "pooler_output_size",
    "patch_embeds_hidden_size",
    "emb_dim",
    "entity_emb_size",
    "d_latents",
    "mamba_d_state",
    "state_size",
    "d_state",
    "encoder_dim",
    "decoder_dim",
}
_FFN = {
    "intermediate_size",
    "ffn_dim",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
    "d_ff",
    "n_inner",
    "ffn_hidden_size",
    "ff_dim",
    "inner_dim",
    "moe_intermediate_size",
    "shared_expert_intermediate_size",
    "moe_shared_expert_intermediate_size",
    "expert_intermediate_size",
    "dense_intermediate_size",
    "mlp_dim",
    "d_inner",
    "hidden_ff_size",
    "encoder_intermediate_size",
    "decoder_intermediate_size",
}
_LAYERS = {
    "num_hidden_layers",
    "num_layers",
    "n_layer",
    "n_layers",
    "encoder_layers",
    "decoder_layers",
    "num_encoder_layers",
    "num_decoder_layers",
    "decoder_num_layers",
    "encoder_num_layers",
    "num_decoder_hidden_layers",
    "decoder_num_hidden_layers",
    "num_text_layers",
    "num_vision_layers",
    "text_num_hidden_layers",
    "num_single_layers",
    "num_cross_layers",
}
_HEADS = {
    "mamba_n_heads",
    "mamba_num_heads",
    "num_attention_heads",
    "n_head",
    "n_heads",
    "num_heads",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "decoder_num_attention_heads",
    "encoder_num_attention_heads",
    "num_decoder_attention_heads",
}
_KV_HEADS = {
    "mamba_n_heads",
    "mamba_num_heads",
    "num_key_value_heads",
    "num_kv_heads",
    "n_kv_heads",
    "multi_query_group_num",
    "num_key_value_groups",
}
_HEAD_DIM = {
    "head_dim",
    "d_head",
    "d_kv",
    "attention_head_dim",
    "kv_channels",
    "qk_rope_head_dim",
    "v_head_dim",
    "qk_head_dim",
}
_VOCAB = {
    "vocab_size",
    "input_vocab_size",
    "src_vocab_size",
    "tgt_vocab_size",
    "n_words",
    "entity_vocab_size",
    "pronunciation_vocab_size",
    "shape_vocab_size",
    "n_vocab",
    "text_vocab_size",
    "output_vocab_size",
    "target_vocab_size",
    "decoder_vocab_size",
}
_EXPERTS = {"num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_experts_per_tok"}
_POSITIONS = {"max_position_embeddings", "n_positions", "max_source_positions", "max_target_positions", "n_ctx"}
_LAYER_LISTS = {"depths", "encoder_layers_per_stage", "num_layers_per_stage", "block_layers"}
_WIDTH_LISTS = {"hidden_sizes", "embed_dims", "embed_dim_list", "dims", "channels", "neck_hidden_sizes", "conv_dim"}
#: Sizes some configs leave unset but their models need (time-series models).
_REQUIRED = {"prediction_length": 4, "context_length": 8}
#: Scaling factors (EfficientNet-style towers) that multiply widths and depths.
_COEFFICIENTS = {"width_coefficient": 0.25, "depth_coefficient": 0.25}
#: Booleans that would pull in another library or download weights.
_FALSE = {"use_timm_backbone", "use_pretrained_backbone"}
_HEAD_LISTS = {"num_heads", "num_attention_heads", "heads"}


def _is_config(value: Any) -> bool:
    return hasattr(value, "to_dict") and hasattr(value, "model_type")


def _set(config: Any, key: str, value: Any) -> None:
    """Set a stored attribute without the config's per-assignment validation: sizes change together, and
    validators that check one against another would reject the intermediate state."""
    vars(config)[key] = value


def shrink(config: Any, strength: int) -> None:
    """Shrink ``config`` in place. ``strength`` 2: everything; 1: depth, vocab, experts and positions only;
    0: depth only."""
    _shrink(config, strength, seen=set())


def _shrink(config: Any, strength: int, seen: set[int]) -> None:
    if id(config) in seen:
        return
    seen.add(id(config))
    attrs = dict(vars(config))
    old_layers = next((v for k, v in attrs.items() if k in _LAYERS and isinstance(v, int)), None)
    for key, value in attrs.items():
        if key.startswith("_"):
            continue
        if _is_config(value):
            _shrink(value, strength, seen)
            continue
        if value is None and key in _REQUIRED:
            _set(config, key, _REQUIRED[key])
            continue
        if isinstance(value, float) and strength >= 2 and key in _COEFFICIENTS:
            _set(config, key, min(value, _COEFFICIENTS[key]))
            continue
        if isinstance(value, bool):
            if value and key in _FALSE:
                _set(config, key, False)
            continue
        new = _new_value(key, value, strength, old_layers)
        if new is not None and new != value:
            _set(config, key, new)
    if strength >= 2:
        _fix_ssm(config)
    _fix_token_ids(config)


def _new_value(key: str, value: Any, strength: int, old_layers: int | None) -> Any:
    if isinstance(value, int):
        return _new_int(key, value, strength)
    if not isinstance(value, (list, tuple)):
        return None
    kind = type(value)  # tuples stay tuples (dataclass configs of vision towers use them)
    if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if strength >= 1 and key in _LAYER_LISTS:
            return kind([1] * len(value))
        if strength >= 2 and key in _WIDTH_LISTS:
            return kind(min(HIDDEN * (2**i), 4 * HIDDEN) for i in range(len(value)))
        if strength >= 2 and key in _HEAD_LISTS:
            return kind([HEADS] * len(value))
    if old_layers and len(value) == old_layers and old_layers > LAYERS:
        return value[:LAYERS]
    return None


def _new_int(key: str, value: int, strength: int) -> int | None:
    if value <= 0:
        return None
    if key in _LAYERS:
        return min(value, LAYERS)
    if strength >= 1:
        if key in _VOCAB:
            return min(value, VOCAB)
        if key in _EXPERTS:
            return min(value, 4 if key != "num_experts_per_tok" else 2)
        if key in _POSITIONS:
            return min(value, 64)
    if strength >= 2:
        if key in _WIDTH:
            return min(value, HIDDEN)
        if key in _FFN:
            return min(value, FFN)
        if key in _HEADS:
            return min(value, HEADS)
        if key in _KV_HEADS:
            return min(value, HEADS)
        if key in _HEAD_DIM:
            return min(value, HEAD_DIM)
        if key in {"image_size", "img_size"}:
            return min(value, 32)
        if key in {"patch_size", "spatial_patch_size"}:
            return min(value, 8)
        if key in {"n_groups", "mamba_n_groups"}:
            return 1
        if key == "num_groups":
            return min(value, HEADS)
        if key in {"num_channels_in_latent", "codebook_dim", "num_codebooks", "num_filters"}:
            return min(value, 4)
        if key in {"codebook_size", "num_mel_bins", "feature_size"}:
            return min(value, 32)
    return None


def _fix_ssm(config: Any) -> None:
    """State-space mixers split ``expand * hidden`` into heads: keep heads x head size equal to it."""
    v = vars(config)
    hidden = v.get("hidden_size")
    for heads_key, dim_key, expand_key in (
        ("mamba_n_heads", "mamba_d_head", "mamba_expand"),
        ("num_heads", "head_dim", "expand"),
        ("mamba_num_heads", "mamba_head_dim", "expand"),
        ("mamba_num_heads", "mamba_head_dim", "mamba_expand"),
    ):
        heads, expand = v.get(heads_key), v.get(expand_key)
        if all(isinstance(x, int) for x in (hidden, heads, expand)) and dim_key in v and heads:
            _set(config, dim_key, expand * hidden // heads)


def _fix_token_ids(config: Any) -> None:
    """Special token ids at or beyond the shrunk vocab would break embeddings (padding_idx): move them inside."""
    vocab = next((getattr(config, k) for k in _VOCAB if isinstance(getattr(config, k, None), int)), None)
    if not vocab:
        return
    slot = vocab - 1
    for key, value in dict(vars(config)).items():
        if (key.endswith(("_token_id", "_token_index", "_id")) and isinstance(value, int)) and value >= vocab:
            _set(config, key, slot)
            slot = max(slot - 1, 0)
