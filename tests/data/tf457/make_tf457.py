"""Write the shipped transformers 4.57 checkpoints under tests/data/tf457/ (run in an environment with 4.57).

    python3 -m venv /tmp/venv-sweep-tf4
    /tmp/venv-sweep-tf4/bin/pip install torch==2.13.0 'transformers==4.57.*' safetensors
    /tmp/venv-sweep-tf4/bin/python tests/data/tf457/make_tf457.py

Generated with transformers 4.57.6 and torch 2.13.0 (recorded in VERSION). For each architecture: the first
task class with a head, a tiny config (the sweep's generic shrinker, smaller still), saved tied and untied, with
safetensors and with ``safe_serialization=False`` (pytorch_model.bin). Seeded, so re-running writes the same
tensors; transformers 4 also writes its version into each config.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "sweep"))

import _build  # noqa: E402
import _tiny  # noqa: E402

ARCHITECTURES = (
    "llama",
    "qwen2",
    "gemma",
    "gemma2",
    "mistral",
    "gpt2",
    "bert",
    "roberta",
    "t5",
    "bart",
    "opt",
    "phi3",
    "gpt_neox",
    "whisper",
    "mbart",
    "marian",
    "qwen3",
    # Where 4.57 saves differ from what 5.x writes: config written as 4.57 does (Qwen2-VL's architectures only in
    # text_config, LFM2-VL's model_type 'lfm2-vl'), ties the other way round (FSMT), both names declared (Moshi).
    "qwen2_vl",
    "qwen2_5_vl",
    "lfm2_vl",
    "fsmt",
    "moshi",
    "albert",
    "luke",
    "open-llama",
    # Model types transformers 5 removed (4.57 is their only loader), and a head 4.57 ties and 5.x declares no tie for.
    "mega",
    "nezha",
    "bigbird_pegasus",
)


def main() -> None:
    import torch
    import transformers
    from transformers import AutoConfig

    transformers.logging.set_verbosity_error()
    _tiny.HIDDEN, _tiny.HEAD_DIM, _tiny.FFN, _tiny.LAYERS, _tiny.VOCAB = 16, 8, 16, 1, 48
    for old in HERE.iterdir():
        if old.is_dir():
            shutil.rmtree(old)
    for model_type in ARCHITECTURES:
        cls = getattr(transformers, _build.task_classes(model_type)[0])
        for tie in (True, False):
            config = AutoConfig.for_model(model_type)
            _tiny.shrink(config, 2)
            _build._set_tie(config, tie)
            torch.manual_seed(0)
            model = cls(config)
            for safe in (True, False):
                folder = HERE / f"{model_type}-{'tied' if tie else 'untied'}-{'safetensors' if safe else 'bin'}"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.save_pretrained(str(folder), safe_serialization=safe)
    legacy_prefix_saves()
    (HERE / "VERSION").write_text(f"transformers {transformers.__version__}\ntorch {torch.__version__}\n")


#: Sub-models 4.x saved under a prefix 5.x strips on load (``PrefixChange`` in transformers' conversion mapping):
#: two layers, so that a copy with the last one removed still names the list. Untied safetensors only.
LEGACY_PREFIX = ("clip_vision_model",)


def legacy_prefix_saves() -> None:
    """Write only the LEGACY_PREFIX folders (``make_tf457.py --legacy-prefix`` leaves the others alone)."""
    import torch
    import transformers
    from transformers import AutoConfig

    transformers.logging.set_verbosity_error()
    _tiny.HIDDEN, _tiny.HEAD_DIM, _tiny.FFN, _tiny.LAYERS, _tiny.VOCAB = 16, 8, 16, 2, 48
    for model_type in LEGACY_PREFIX:
        cls = getattr(transformers, _build.task_classes(model_type)[0])
        config = AutoConfig.for_model(model_type)
        _tiny.shrink(config, 2)
        _build._set_tie(config, False)
        torch.manual_seed(0)
        folder = HERE / f"{model_type}-untied-safetensors"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(config).save_pretrained(str(folder))


if __name__ == "__main__":
    legacy_prefix_saves() if sys.argv[1:] == ["--legacy-prefix"] else main()
