"""The Trainer callback in a real (short) training run of a tiny model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import Trainer, TrainingArguments

from live_models import build
from tiecheck.findings import Severity
from tiecheck.integrations.transformers import CheckpointRejected, TiecheckCallback

pytestmark = pytest.mark.transformers


class _Tokens(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = torch.arange(i, i + 6) % 64
        return {"input_ids": ids, "labels": ids}


class _CustomSaveTrainer(Trainer):
    """Saves as some training scripts do: every tensor cloned into save_file, so the tied head is written twice."""

    def _save(self, output_dir: str | None = None, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        folder = Path(output_dir or self.args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().clone().contiguous() for k, v in self.model.state_dict().items()},
            folder / "model.safetensors",
        )
        self.model.config.save_pretrained(folder)


def _trainer(cls: type[Trainer], tmp_path: Path, callback: TiecheckCallback, model: object = None) -> Trainer:
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        save_steps=1,
        save_strategy="steps",
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        logging_strategy="no",
        disable_tqdm=True,
    )
    model = build("llama-tied") if model is None else model
    return cls(model=model, args=args, train_dataset=_Tokens(), callbacks=[callback])


def test_callback_reports_a_duplicated_head_and_fails_the_run_when_asked(tmp_path: Path) -> None:
    failing = TiecheckCallback(fail_on="warning")
    with pytest.raises(CheckpointRejected, match="TC101"):
        _trainer(_CustomSaveTrainer, tmp_path / "fail", failing).train()
    assert len(failing.reports) == 1  # the run stopped at its first checkpoint
    assert (tmp_path / "fail" / "checkpoint-1" / "model.safetensors").exists()


def test_callback_logs_and_lets_the_run_finish(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    logging_only = TiecheckCallback(fail_on=None)
    with caplog.at_level(logging.INFO, logger="tiecheck"):
        _trainer(_CustomSaveTrainer, tmp_path / "log", logging_only).train()
    assert [r.target.rsplit("/", 1)[-1] for r in logging_only.reports] == ["checkpoint-1", "checkpoint-2"]
    assert any("TC101" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_callback_passes_the_trainers_own_saves(tmp_path: Path) -> None:
    strict = TiecheckCallback(fail_on="warning")
    trainer = _trainer(Trainer, tmp_path / "clean", strict)
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    strict.check(tmp_path / "final")
    assert len(strict.reports) == 3
    assert all(f.severity < Severity.WARNING for r in strict.reports for f in r.findings)


@pytest.mark.parametrize("modules_to_save", [None, ["lm_head"], ["embed_tokens", "lm_head"]])
def test_callback_passes_a_lora_fine_tunes_checkpoints(tmp_path: Path, modules_to_save: list[str] | None) -> None:
    """The most common fine-tune: each checkpoint-N is an adapter folder beside the Trainer's pickles."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        build("llama-tied"), LoraConfig(r=2, target_modules=["q_proj", "v_proj"], modules_to_save=modules_to_save)
    )
    strict = TiecheckCallback(fail_on="warning")
    _trainer(Trainer, tmp_path, strict, model).train()
    assert len(strict.reports) == 2
    assert all(f.severity < Severity.WARNING for r in strict.reports for f in r.findings)
