"""Each planted training-signal bug stops the run before step 0 with its reason; a clean run passes."""

from __future__ import annotations

import json

import pytest
import trl

from medft.modeling import models
from medft.text import labels
from medft.text.audit import AuditError
from medft.text.templates import load_template
from medft.training import trainer as trainer_lib
from medft.training.pipeline import JobInfo, run_training

from conftest import compose_config

FAST = ["logger=none", "train.max_steps=2", "train.save_strategy=no", "~data.sources.pubmedqa_ko"]


def _map_first_row(monkeypatch, change):
    """Plant a labelling bug: rewrite one tokenized training row after medft built it."""
    real = labels.tokenize_splits

    def planted(*args, **kwargs):
        tokenized, report = real(*args, **kwargs)
        train = tokenized["train"]
        tokenized["train"] = train.map(lambda row, i: change(dict(row)) if i == 3 else row, with_indices=True)
        return tokenized, report

    monkeypatch.setattr(labels, "tokenize_splits", planted)


def _run_expecting(monkeypatch, tmp_path, overrides, fragment):
    calls = []
    monkeypatch.setattr(trl.SFTTrainer, "train", lambda self, *a, **k: calls.append("train"))
    run_dir = tmp_path / "run"
    with pytest.raises(AuditError) as err:
        run_training(compose_config([*FAST, *overrides]), JobInfo(run_dir=run_dir))
    message = str(err.value)
    assert fragment in message and "\n" not in message, message
    assert calls == [], "training started despite the failed audit"
    assert not (run_dir / "metrics.json").exists()
    summary = json.loads((run_dir / "preflight.json").read_text())
    assert any(v.startswith("FAILED") for v in summary["checks"].values())
    return message


def test_clean_run_passes_every_check(tmp_path):
    run_training(compose_config(FAST), JobInfo(run_dir=tmp_path / "run"))
    summary = json.loads((tmp_path / "run" / "preflight.json").read_text())
    assert set(summary["checks"]) == {
        "supervised_tokens",
        "end_of_turn_supervised",
        "leading_bos",
        "template_matches_model",
        "packing_position_ids",
        "lora_coverage",
    }
    assert not any(v.startswith("FAILED") for v in summary["checks"].values())


def test_row_without_supervised_tokens(monkeypatch, tmp_path):
    _map_first_row(monkeypatch, lambda row: {**row, "labels": [-100] * len(row["labels"])})
    message = _run_expecting(monkeypatch, tmp_path, [], "preflight supervised_tokens: row ")
    assert "has no supervised token" in message


def _drop_last_end_of_turn(row):
    labels_ = list(row["labels"])
    last = max(i for i, x in enumerate(labels_) if x != -100)
    labels_[last] = -100
    return {**row, "labels": labels_}


def test_end_of_turn_not_supervised(monkeypatch, tmp_path):
    _map_first_row(monkeypatch, _drop_last_end_of_turn)
    _run_expecting(monkeypatch, tmp_path, [], "preflight end_of_turn_supervised: row ")


def test_double_bos(monkeypatch, tmp_path):
    _map_first_row(
        monkeypatch, lambda row: {**row, "input_ids": [1, 1, *row["input_ids"]], "labels": [-100, -100, *row["labels"]]}
    )
    message = _run_expecting(monkeypatch, tmp_path, [], "preflight leading_bos: row ")
    assert "starts with 2 BOS ([BOS]), the model's own usage gives 0" in message


def test_pad_equal_to_eos_masking_the_end_of_turn(monkeypatch, tmp_path):
    """The classic: pad := eos, labels derived by masking pad ids, so no turn ever learns to stop."""
    real_tokenizer = models.load_tokenizer

    def pad_is_eos(*args, **kwargs):
        tok = real_tokenizer(*args, **kwargs)
        tok.pad_token = tok.eos_token
        return tok

    monkeypatch.setattr(models, "load_tokenizer", pad_is_eos)
    real = labels.tokenize_splits

    def naive_labels(datasets, tokenizer, *args, **kwargs):
        tokenized, report = real(datasets, tokenizer, *args, **kwargs)
        pad = tokenizer.pad_token_id
        tokenized["train"] = tokenized["train"].map(
            lambda row: {
                "labels": [-100 if t == pad else y for t, y in zip(row["input_ids"], row["labels"], strict=True)]
            }
        )
        return tokenized, report

    monkeypatch.setattr(labels, "tokenize_splits", naive_labels)
    message = _run_expecting(monkeypatch, tmp_path, [], "preflight end_of_turn_supervised")
    assert "pad id equals the end-of-turn id" in message


def test_template_differs_from_the_models_own(monkeypatch, tmp_path):
    """A model whose own template omits EXAONE's empty system block (as some frameworks' copies do)."""
    variant = load_template("exaone3_5").replace(
        "{% if loop.first and message['role'] != 'system' %}{{ '[|system|][|endofturn|]\\n' }}{% endif %}", ""
    )
    assert variant != load_template("exaone3_5")
    real_tokenizer = models.load_tokenizer

    def with_own_template(*args, **kwargs):
        tok = real_tokenizer(*args, **kwargs)
        tok.medft_model_template = variant
        return tok

    monkeypatch.setattr(models, "load_tokenizer", with_own_template)
    message = _run_expecting(monkeypatch, tmp_path, [], "preflight template_matches_model: row ")
    assert "renders differently from the model's own chat template" in message


def test_packing_without_position_ids(monkeypatch, tmp_path):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    real_build = trainer_lib.build_trainer

    def plain_collator(*args, **kwargs):
        trainer = real_build(*args, **kwargs)
        trainer.data_collator = DataCollatorForLanguageModeling(pad_token_id=0)  # pads, no position ids
        return trainer

    monkeypatch.setattr(trainer_lib, "build_trainer", plain_collator)
    _run_expecting(monkeypatch, tmp_path, ["train.packing=true"], "preflight packing_position_ids")


def test_lora_targets_missing_the_mlp(monkeypatch, tmp_path):
    """Adapters that reach only the attention (a name table that misses the MLP) fail the audit."""
    from medft.modeling import families

    real = families.lora_target_names
    monkeypatch.setattr(
        families, "lora_target_names", lambda model, target, explicit, name: real(model, "attention", explicit, name)
    )
    message = _run_expecting(monkeypatch, tmp_path, [], "preflight lora_coverage: LoRA adapters cover 0 of 4 gate")
    assert "gate_proj" in message and "method.lora.target=all" in message
