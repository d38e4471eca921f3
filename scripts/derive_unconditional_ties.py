"""Which transformers 4 ties hold whatever ``tie_word_embeddings`` says (run under transformers 4.x).

    /tmp/venv-tf4/bin/python scripts/derive_unconditional_ties.py > /tmp/unconditional-4.json
    python scripts/derive_unconditional_ties.py /tmp/unconditional-4.json > /tmp/unconditional-5.json

transformers 4 shared some parameters in the module's ``__init__`` (``self.decoder.bias = self.bias`` in
BERT's prediction head, T5's ``encoder.embed_tokens = shared``), so they stayed one ``Parameter`` with every
tie flag false, and ``save_pretrained`` wrote one name. transformers 5 declares them in ``_tied_weights_keys``,
governed by the flag: an untied checkpoint saved by 4.x then lacks a name 5.x no longer restores.

For every class of the installed version's tie data (src/tiecheck/ties/data/transformers-<version>.json) that
records a tie (only the classes of a previous run's output, when given), this builds the class on the meta
device with every tie flag false and lists the recorded ties whose two names are still one Parameter. Run under
4.57 and then under 5.x for the classes 4.57 listed: the 4.57 ties that 5.x no longer holds unconditionally
are the ``unconditional`` table of src/tiecheck/ties/data/loaders.json (each with whether 5.x still shares it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate_ties as gen  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

DATA = HERE.parent / "src" / "tiecheck" / "ties" / "data"


def shared_untied(cls: type, config_cls: type) -> set[frozenset[str]]:
    config = config_cls()
    gen.force_tie_flags(config, False)
    with torch.device("meta"):
        model = cls(config)
    saved = gen.saved_namer(model)
    by_id: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(param), []).append(saved(name))
    return {frozenset(names) for names in by_id.values() if len(names) > 1}


def main() -> int:
    data = json.loads((DATA / f"transformers-{transformers.__version__}.json").read_text())
    # under 5.x: the pairs 4.x shared, from that run's output
    only = json.loads(Path(sys.argv[1]).read_text())["unconditional"] if len(sys.argv) > 1 else None
    types = data["model_types"]
    result: dict[str, list[list[str]]] = {}
    failed: dict[str, str] = {}
    for name, entry in sorted(data["classes"].items()):
        ties = (entry.get("ties") or []) if only is None else [[t, s, ""] for t, s in only.get(name, [])]
        if not ties or entry.get("unbuilt") or (only is not None and name not in only):
            continue
        cls = getattr(transformers, name, None)
        config_name = types.get(entry["model_type"], {}).get("config")
        config_cls = getattr(transformers, config_name, None) if config_name else None
        if cls is None or config_cls is None:
            continue
        try:
            groups = shared_untied(cls, config_cls)
        except Exception as exc:  # noqa: BLE001 - recorded, as generate_ties records classes it cannot build
            failed[name] = f"{type(exc).__name__}: {str(exc)[:120]}"
            continue
        kept = [[t, s] for t, s, _ in ties if any(t in g and s in g for g in groups)]
        if kept:
            result[name] = kept
    out = {"transformers": transformers.__version__, "unconditional": result, "failed": failed}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
