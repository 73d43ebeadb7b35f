"""W&B runs carry what comparing runs needs: declared metrics, best validation loss, the data and
the audit, and (when asked) the trained weights as an artifact. Read back from the offline run."""

from __future__ import annotations

import json

from medft.runs.tracking import find_offline_runs, read_offline_run
from medft.training.pipeline import JobInfo, run_training

from conftest import compose_config


def test_run_summary_data_audit_and_model_artifact(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_config(
        [
            "logger=wandb",
            "logger.mode=offline",
            "logger.log_model=true",
            "train.max_steps=4",
            "train.eval_steps=2",
            "train.save_strategy=no",
        ]
    )
    metrics = run_training(cfg, JobInfo(run_dir=run_dir))
    (offline,) = find_offline_runs(run_dir)
    record = read_offline_run(offline)
    summary = record["summary"]
    history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
    losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert len(losses) >= 3 and summary["best/eval_loss"] == min(losses)
    assert summary["data/train_rows"] == metrics["train_rows"] and summary["data/validation_rows"] > 0
    assert summary["data/train_supervised_tokens"] == metrics["train_supervised_tokens"]
    saved = {p.name for p in (offline / "files").iterdir()}
    assert {"data_report.json", "preflight.json"} <= saved, saved
    artifacts = record.get("artifacts", [])
    assert [a["type"] for a in artifacts] == ["model"] and artifacts[0]["name"].endswith("-adapter")


def test_no_artifact_unless_asked(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_config(["logger=wandb", "logger.mode=offline", "train.max_steps=2", "train.save_strategy=no"])
    run_training(cfg, JobInfo(run_dir=run_dir))
    (offline,) = find_offline_runs(run_dir)
    assert not read_offline_run(offline).get("artifacts")
