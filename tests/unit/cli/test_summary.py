"""The closing lines of medft.train: time, throughput, memory and the W&B run, from the run dir's files."""

from __future__ import annotations

import json

from medft.cli.summary import duration, speed_line, wandb_line

METRICS = {
    "global_step": 96,
    "epochs": 3.0,
    "train_rows": 127,
    "train_supervised_tokens": 19860,
    "runtime_s": 24.0,
    "train_runtime_s": 12.0,
    "peak_memory_gb": None,
    "peak_rss_gb": 0.783,
}


def test_speed_line_uses_the_trainers_samples_per_second_and_counts_supervised_tokens(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps([{"loss": 8.0}, {"train_samples_per_second": 31.75}]))
    line = speed_line(tmp_path, METRICS)
    assert line == (
        "medft: 96 steps, 3 epochs in 12 s (whole run 24 s) | 31.8 samples/s, 4,965 supervised tokens/s"
        " | peak memory 0.78 GB (process RSS)"
    )


def test_speed_line_without_history_and_on_a_gpu(tmp_path):
    line = speed_line(tmp_path, {**METRICS, "peak_memory_gb": 17.256, "train_runtime_s": 3725.0})
    assert "in 1 h 02 min" in line and "0.102 samples/s" in line and line.endswith("peak GPU memory 17.26 GB")
    assert speed_line(tmp_path, {"train_loss": 1.0}) is None


def test_wandb_line_offline_online_and_none(tmp_path):
    offline = tmp_path / "wandb" / "offline-run-20261121_061401-abc123"
    offline.mkdir(parents=True)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"wandb": {"id": "abc123", "mode": "offline", "project": "medft"}}))
    assert (
        wandb_line(tmp_path) == f"medft: W&B run abc123 (offline, project medft); upload it with: wandb sync {offline}"
    )
    manifest.write_text(json.dumps({"wandb": {"id": "abc123", "mode": "online", "project": "medft"}}))
    assert wandb_line(tmp_path) == "medft: W&B run abc123 (online, project medft)"
    manifest.write_text(json.dumps({"wandb": None}))
    assert wandb_line(tmp_path) is None


def test_duration():
    assert [duration(s) for s in (9.6, 75, 3600)] == ["10 s", "1 min 15 s", "1 h 00 min"]
