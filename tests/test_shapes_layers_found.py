"""TC016 on layer lists beyond transformers 5's own names and the usual layer-count keys, on real saves.

- transformers 4.x saved CLIP/SigLIP-family sub-models under a prefix 5.x strips on load (``PrefixChange`` in
  its conversion mapping): ``vision_model.encoder.layers.N`` for ``encoder.layers.N``. The shipped 4.57 save
  tests/data/tf457/clip_vision_model-untied-safetensors (tests/data/tf457/make_tf457.py --legacy-prefix).
- Index lists sized by config.json integers other than the usual layer counts: Moonshine's
  ``encoder_num_hidden_layers``, Speech2Text's ``num_conv_layers``.

Each damaged copy is loaded with transformers 5 to check the claim: the named tensors start random.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from tiecheck import Severity, scan
from tiecheck.findings import Finding
from tiecheck.ties.shapes import IndexList, shape_knowledge

DATA = Path(__file__).resolve().parent / "data" / "tf457"
CLIP_457 = DATA / "clip_vision_model-untied-safetensors"


def _layer_findings(folder: Path) -> list[Finding]:
    return [f for f in scan(folder).findings if f.code == "TC016"]


def _drop(folder: Path, prefix: str) -> list[str]:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = folder / "model.safetensors"
    tensors = safetensors_torch.load_file(str(path))
    dropped = sorted(n for n in tensors if n.startswith(prefix))
    for name in dropped:
        del tensors[name]
    safetensors_torch.save_file(tensors, str(path), metadata={"format": "pt"})
    return dropped


def _missing_keys(folder: Path, architecture: str) -> set[str]:
    transformers = pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = getattr(transformers, architecture).from_pretrained(str(folder), output_loading_info=True)
    return set(info["missing_keys"])


# -- the generated data ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("CLIPVisionModel", "vision_model."),
        ("CLIPTextModel", "text_model."),
        ("ChineseCLIPVisionModel", "vision_model."),
        ("SiglipVisionModel", "vision_model."),
        ("Siglip2VisionModel", "vision_model."),
    ],
)
def test_legacy_prefix_of_clip_family_sub_models(name: str, prefix: str) -> None:
    shapes = shape_knowledge()[name]
    (legacy,) = shapes.legacy
    assert IndexList(f"{prefix}encoder.layers.", "num_hidden_layers", 0) in legacy.lists
    assert IndexList("encoder.layers.", "num_hidden_layers", 0) in shapes.lists


def test_legacy_prefix_inside_a_composite_model() -> None:
    """A vision tower that is a CLIP/SigLIP sub-model is renamed under its own path only."""
    llava = shape_knowledge()["LlavaForConditionalGeneration"]
    (legacy,) = llava.legacy
    assert IndexList("vision_tower.vision_model.encoder.layers.", "vision_config.num_hidden_layers", 0) in legacy.lists
    assert IndexList("language_model.model.layers.", "text_config.num_hidden_layers", 0) in legacy.lists


def test_stage_counts_by_a_list_length() -> None:
    """Swin's stages are len(depths); num_heads changes length with it and is recorded too (see below)."""
    for name in ("SwinModel", "DonutSwinModel", "Swin2SRModel"):
        keys = {lst.key for lst in shape_knowledge()[name].lists}
        assert "len(depths)" in keys, name


@pytest.mark.transformers
def test_a_list_merely_long_enough_makes_no_claim(tmp_path: Path) -> None:
    """num_heads longer than depths still builds (a stage reads its own entry): the stage count is not claimed
    from list lengths that disagree."""
    transformers = pytest.importorskip("transformers")
    config = transformers.SwinConfig(**{**SWIN, "num_heads": [1, 1, 2, 2]})
    transformers.SwinModel(config).save_pretrained(str(tmp_path / "swin"))
    _drop(tmp_path / "swin", "encoder.layers.2.")
    assert _layer_findings(tmp_path / "swin") == []


def test_layer_counts_under_other_keys() -> None:
    moonshine = shape_knowledge()["MoonshineForConditionalGeneration"]
    assert IndexList("model.encoder.layers.", "encoder_num_hidden_layers", 0) in moonshine.lists
    speech2text = shape_knowledge()["Speech2TextForConditionalGeneration"]
    assert IndexList("model.encoder.conv.conv_layers.", "num_conv_layers", 0) in speech2text.lists


@pytest.mark.transformers
@pytest.mark.parametrize(
    "name",
    [
        "CLIPVisionModel",
        "CLIPTextModel",
        "SiglipVisionModel",
        "Siglip2VisionModel",
        "ChineseCLIPVisionModel",
        "PaliGemmaForConditionalGeneration",
        "GteModel",
        "Qwen2_5OmniThinkerForConditionalGeneration",
        "MLCDVisionModel",
        "LlamaForCausalLM",
    ],
)
def test_a_legacy_naming_exactly_where_the_loader_has_a_prefix_change(name: str) -> None:
    """Read from the loader, not typed: a class transformers 5 builds with a ``PrefixChange`` among its loading
    conversions has a legacy naming; one without (MLCD's model type is not mapped to CLIP's) has none."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import PrefixChange

    cls = getattr(transformers, name)
    with torch.device("meta"):
        model = cls(cls.config_class())
    changes = any(isinstance(c, PrefixChange) for c in get_model_conversion_mapping(model))
    assert bool(shape_knowledge()[name].legacy) == changes


# -- a transformers 4.57 save of a CLIP vision model ------------------------------------------------------


def test_clean_457_clip_vision_save_has_no_layer_finding() -> None:
    assert (CLIP_457 / "config.json").is_file()
    report = scan(CLIP_457)
    assert [f for f in report.findings if f.severity >= Severity.WARNING] == []


def test_457_clip_vision_save_missing_its_last_layer(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(CLIP_457, tmp_path / "clip"))
    dropped = _drop(folder, "vision_model.encoder.layers.1.")
    (found,) = _layer_findings(folder)
    assert (found.code, found.severity) == ("TC016", Severity.ERROR)
    assert "vision_model.encoder.layers.{1}" in found.message and "num_hidden_layers is 2" in found.message
    assert sorted(found.tensors) == dropped


@pytest.mark.transformers
def test_transformers_5_loads_the_457_clip_copy_with_the_layer_random(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(CLIP_457, tmp_path / "clip"))
    dropped = _drop(folder, "vision_model.encoder.layers.1.")
    assert _missing_keys(folder, "CLIPVisionModel") == {n.removeprefix("vision_model.") for n in dropped}


# -- transformers 5 saves: counts under other keys --------------------------------------------------------

MOONSHINE: dict[str, Any] = {
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 32,
    "encoder_num_hidden_layers": 3,
    "decoder_num_hidden_layers": 2,
    "encoder_num_attention_heads": 2,
    "decoder_num_attention_heads": 2,
}
SPEECH2TEXT: dict[str, Any] = {
    "vocab_size": 64,
    "d_model": 16,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
    "num_conv_layers": 3,
    "conv_kernel_sizes": [5, 5, 5],
    "conv_channels": 16,
    "input_feat_per_channel": 8,
}
SWIN: dict[str, Any] = {
    "image_size": 32,
    "patch_size": 4,
    "embed_dim": 8,
    "depths": [1, 1, 1],
    "num_heads": [1, 1, 2],
    "window_size": 2,
}
CASES = {
    "swin": ("SwinModel", SWIN, "encoder.layers.", "len(depths)"),
    "moonshine": ("MoonshineForConditionalGeneration", MOONSHINE, "model.encoder.layers.", "encoder_num_hidden_layers"),
    "speech2text": (
        "Speech2TextForConditionalGeneration",
        SPEECH2TEXT,
        "model.encoder.conv.conv_layers.",
        "num_conv_layers",
    ),
}


def _saved(tmp_path: Path, case: str) -> Path:
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    architecture, config, _, _ = CASES[case]
    cls = getattr(transformers, architecture)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls(cls.config_class(**config)).save_pretrained(str(tmp_path / case))
    return tmp_path / case


@pytest.mark.transformers
@pytest.mark.parametrize("case", sorted(CASES))
def test_clean_save_has_no_layer_finding(tmp_path: Path, case: str) -> None:
    assert _layer_findings(_saved(tmp_path, case)) == []


@pytest.mark.transformers
@pytest.mark.parametrize("case", sorted(CASES))
def test_last_layer_of_a_list_under_another_key_removed(tmp_path: Path, case: str) -> None:
    architecture, _, prefix, key = CASES[case]
    folder = _saved(tmp_path, case)
    dropped = _drop(folder, f"{prefix}2.")
    assert dropped
    (found,) = _layer_findings(folder)
    assert (found.code, found.severity) == ("TC016", Severity.ERROR)
    assert f"{key} is 3" in found.message and f"{prefix}{{2}}" in found.message
    if case == "swin":  # the names are guessed from the stage before, which has a downsample the last lacks
        assert set(dropped) < set(found.tensors)
    else:
        assert sorted(found.tensors) == dropped
    # the claim: transformers 5 loads it and initialises exactly these tensors at random (Swin: under the
    # names it converts the saved ones to)
    missing = _missing_keys(folder, architecture)
    if case == "swin":
        assert len(missing) == len(dropped) and all(n.startswith(f"{prefix}2.") for n in missing)
    else:
        assert missing == set(dropped)
