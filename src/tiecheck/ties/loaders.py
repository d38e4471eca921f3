"""What each loader does with a checkpoint's head, ties and dtype: the table in ``data/loaders.json``.

The table is data beside the tie data, with the versions it was checked against (docs/loaders.md says
how each column was derived). For every case (tied config and head absent, tied and head stored but
different, config without a dtype, ...) it gives each loader's outcome, per architecture where it was
checked one by one, ``unknown`` elsewhere: a message never claims what the table does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from tiecheck.ties import _records
from tiecheck.ties.known import CURRENT, LEGACY, knowledge

#: The loaders a message speaks for, in the order it names them.
LOADERS = ("transformers 5", "transformers 4", "vLLM", "llama.cpp")
UNKNOWN = "unknown"
REMOVED = "cannot load it (the model type was removed)"


@dataclass(frozen=True)
class Outcome:
    loader: str
    """A key of :data:`LOADERS`."""
    label: str
    """How a message names the loader (``transformers 4.57``)."""
    code: str
    """``ties``, ``uses-stored``, ``random``, ``fails``, ``unknown``..."""
    phrase: str
    effect: str
    """What the model ends up with: ``embedding``, ``stored``, ``random``, ``fails``... (``unknown``)."""


@dataclass(frozen=True)
class LoaderTable:
    labels: dict[str, str]
    checked: dict[str, str]
    outcomes: dict[str, tuple[str, str]]
    """code -> (phrase, effect)"""
    cases: dict[str, dict[str, dict[str, str]]]
    """case -> loader -> architecture (``*``: any other) -> code"""
    unconditional: dict[str, tuple[tuple[str, str], ...]]
    """Per class: the ``(target, source)`` pairs transformers 4 shared whatever the tie flag and 5.x ties only
    when it is true (BERT's ``cls.predictions.decoder.bias`` and ``cls.predictions.bias``)."""

    def outcome(self, case: str, loader: str, architecture: str | None) -> Outcome:
        per_arch = self.cases.get(case, {}).get(loader, {})
        code = per_arch.get(architecture or "*") or per_arch.get("*") or UNKNOWN
        phrase, effect = self.outcomes.get(code, (code, UNKNOWN))
        return Outcome(loader, self.labels.get(loader, loader), code, phrase, effect)


def _table(raw: dict[str, Any]) -> LoaderTable:
    loaders = raw["loaders"]
    return LoaderTable(
        labels={k: v["label"] for k, v in loaders.items()},
        checked={k: v["checked"] for k, v in loaders.items()},
        outcomes={k: (v[0], v[1]) for k, v in raw["outcomes"].items()},
        cases=raw["cases"],
        unconditional={k: tuple((t, s) for t, s in v) for k, v in raw.get("unconditional", {}).items()},
    )


@cache
def loader_table() -> LoaderTable:
    raw = _records.load("loaders.json")
    if raw is None:
        raise FileNotFoundError(_records.DATA / "loaders.json")
    return _table(raw)


def outcomes(cases: dict[str, str | None], architecture: str | None) -> tuple[Outcome, ...]:
    """Each loader's outcome; ``cases`` gives the case per loader (None: which case applies is not known)."""
    table = loader_table()
    result = []
    for loader in LOADERS:
        case = cases.get(loader)
        if loader == LOADERS[0] and architecture is not None and _removed(architecture):
            result.append(Outcome(loader, table.labels[loader], "removed", REMOVED, UNKNOWN))
        elif case is None:
            code, (phrase, effect) = UNKNOWN, table.outcomes[UNKNOWN]
            result.append(Outcome(loader, table.labels[loader], code, phrase, effect))
        else:
            result.append(table.outcome(case, loader, architecture))
    return tuple(result)


def _removed(architecture: str) -> bool:
    """A class transformers 5 no longer has, of a model type it removed (the 4.x data knows it)."""
    return architecture not in knowledge(CURRENT).classes and architecture in knowledge(LEGACY).classes


def tie_cases(state: str, tied: bool | None, legacy_tied: bool | None, outer: bool = True) -> dict[str, str | None]:
    """The case of each loader for a tie in ``state`` (``head-absent``, ``head-identical``, ``head-differs``,
    ``embedding-absent``), given whether transformers 5 and 4 tie it for this config.

    vLLM reads the flag through the transformers it runs with (its models read the outer config's): known when
    both versions agree. llama.cpp's converter never reads it, and the table gives it one outcome for both.
    """

    def case(flag: bool | None) -> str | None:
        return None if flag is None else f"{'tied' if flag else 'untied'}-{state}"

    return {
        "transformers 5": case(tied),
        "transformers 4": case(legacy_tied),
        "vLLM": case(tied) if outer and tied is not None and tied == legacy_tied else None,
        "llama.cpp": case(True),
    }


def dtype_cases(declared: bool) -> dict[str, str | None]:
    case = "dtype-declared" if declared else "dtype-absent"
    return dict.fromkeys(LOADERS, case)


def disagree(found: tuple[Outcome, ...], identical: bool = False) -> bool:
    """The loaders that the table knows about end up with different models.

    ``identical``: the head and the embedding hold the same bytes, so using either is the same model.
    """
    effects = {o.effect for o in found if o.effect != UNKNOWN}
    if identical:
        effects = {"same" if e in ("embedding", "stored") else e for e in effects}
    return len(effects) > 1


def loaders_line(found: tuple[Outcome, ...]) -> str:
    """``transformers 5: ties · transformers 4.57: initialises it at random · vLLM: not checked · ...``"""
    return " · ".join(f"{o.label}: {o.phrase}" for o in found)


def with_loaders(message: str, found: tuple[Outcome, ...], *, identical: bool = False, compare: bool = True) -> str:
    """The message with what each loader does; a disagreement is said first, since it is why to fix it.

    ``compare=False`` for outcomes that differ by each loader's own defaults whatever the checkpoint (dtypes).
    """
    line = loaders_line(found)
    if compare and disagree(found, identical):
        return f"Loaders disagree ({line}). {message}"
    return f"{message} Loaders: {line}."
