"""Signs in a checkpoint folder that its author meant a text generator, not a backbone.

A model saved through ``AutoModel`` (``LlamaModel``) has no head; loaded with
``AutoModelForCausalLM`` it gets a random one unless the config ties it. Whether that was a mistake
shows in the files saved beside the weights: a generation config, a chat template, a model card
declaring a generation task. Only small files are read, and only when asked (a base-model config).
"""

from __future__ import annotations

import json
import re

from tiecheck.io.source import CheckpointStore

#: Larger companions are not read for evidence (tokenizer configs with chat templates are kilobytes).
MAX_READ = 4 << 20
_GENERATION_TASKS = re.compile(r"^pipeline_tag:\s*(text-generation|text2text-generation|image-text-to-text)\s*$", re.M)


def generation_evidence(store: CheckpointStore, names: list[str]) -> tuple[str, ...]:
    """What in the folder says the model generates text; empty when nothing does."""
    found: list[str] = []
    present = set(names)
    for name in ("generation_config.json", "chat_template.jinja", "chat_template.json"):
        if name in present:
            found.append(name)
    if "tokenizer_config.json" in present and _has_chat_template(store):
        found.append("a chat template in tokenizer_config.json")
    if "README.md" in present:
        card = _small_text(store, "README.md")
        if card is not None:
            match = _GENERATION_TASKS.search(card.split("\n---", 1)[0])
            if match is not None:
                found.append(f"pipeline_tag: {match.group(1)} in README.md")
    return tuple(found)


def _has_chat_template(store: CheckpointStore) -> bool:
    text = _small_text(store, "tokenizer_config.json")
    if text is None:
        return False
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and bool(document.get("chat_template"))


def _small_text(store: CheckpointStore, name: str) -> str | None:
    try:
        source = store.open(name)
        try:
            if source.size > MAX_READ:
                return None
            return bytes(source.read(0, source.size)).decode("utf-8", errors="replace")
        finally:
            source.close()
    except OSError:
        return None
