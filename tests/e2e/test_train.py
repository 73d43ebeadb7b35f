"""The entrypoint end to end: the offline demo, every preset, sweeps with W&B runs, first-hour errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from medft.runs.tracking import find_offline_runs, read_offline_run
from medft.training.pipeline import JobInfo, run_training

from conftest import REPO, compose_config

PRESETS = ["hai_exaone_qlora", "pubmedqa_exaone_2.4b_freeze", "pubmedqa_llama_lora", "hira_solar_lora"]


def _cli(*args, env_extra=None, timeout=600, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "medft.train", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_default_run_offline_demo(tmp_path):
    """`python -m medft.train` with no overrides: run dir printed, loss falls, every run-dir file there."""
    out = _cli(cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = [line for line in out.stdout.splitlines() if line.startswith("medft: run dir ")]
    run_dir = Path(printed[0].removeprefix("medft: run dir "))
    assert run_dir.parent == tmp_path / "outputs" / "runs" and run_dir.name.endswith("_tiny_sample_lora")
    assert "validation loss" in out.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_loss"] < metrics["eval_loss_initial"]
    for name in (
        "config.resolved.yaml",
        "manifest.json",
        "metrics.json",
        "history.json",
        "loss.png",
        "data_report.json",
        ".hydra/config.yaml",
        "adapter/adapter_model.safetensors",
        "adapter/chat_template.jinja",
        "train.log",
    ):
        assert (run_dir / name).exists(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["command"].startswith("python -m medft.train")
    assert manifest["packages"]["torch"].startswith("2.13.0")
    assert manifest["wandb"]["mode"] == "offline" and manifest["data_fingerprint"]
    # CPU: bf16 and checkpointing only slow training down, so the defaults turn them off.
    assert manifest["compute"]["bf16"] is False and manifest["compute"]["gradient_checkpointing"] is False
    history = json.loads((run_dir / "history.json").read_text())
    assert history[0]["step"] == 0 and history[0]["eval_loss"] == metrics["eval_loss_initial"]
    resolved = OmegaConf.load(run_dir / "config.resolved.yaml")
    assert resolved.model.name == "tiny" and resolved.method.name == "lora"
    runs = find_offline_runs(run_dir)
    assert len(runs) == 1
    record = read_offline_run(runs[0])
    assert record["id"] == manifest["wandb"]["id"]
    assert any("eval/loss" in row for row in record["history"])
    assert record["summary"]["preflight/leading_bos"] == "every row starts with 0 BOS ([BOS])"
    # CPU: SDPA has no variable-length kernel, so batches are grouped by length instead of packed
    assert manifest["compute"]["packing"] is False and manifest["compute"]["group_by_length"] is True
    assert manifest["compute"]["fused_loss"] is False
    # Every auto switch as decided once for the run, and what the trainer was given.
    settings = manifest["resolved"]
    assert settings["device"] == "cpu" and settings["attention"] == "sdpa" and settings["weights_dtype"] == "float32"
    assert {k: settings[k] for k in ("bf16", "gradient_checkpointing", "packing", "group_by_length", "fused_loss")} == {
        k: manifest["compute"][k]
        for k in ("bf16", "gradient_checkpointing", "packing", "group_by_length", "fused_loss")
    }
    assert "gradient_checkpointing" in settings["auto"]
    tokenization_cache = json.loads((run_dir / "data_report.json").read_text())["tokenization_cache"]
    assert tokenization_cache["key"], "the default run's tokenized splits are cacheable"
    preflight = json.loads((run_dir / "preflight.json").read_text())
    assert "packing off" in preflight["checks"]["packing_position_ids"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_on_the_tiny_model(preset, tmp_path):
    cfg = compose_config(
        [
            f"experiment={preset}",
            "model=tiny",
            "data=sample",
            "logger=none",
            "train.max_steps=3",
            "train.eval_steps=0",
            "train.save_strategy=no",
            "train.load_best_model_at_end=false",
        ]
    )
    assert cfg.name == preset
    metrics = run_training(cfg, JobInfo(run_dir=tmp_path / preset))
    assert metrics["global_step"] == 3
    assert metrics["eval_loss"] is not None and metrics["train_loss"] is not None


def test_best_checkpoint_is_kept_by_validation_loss(tmp_path):
    """hira_solar_lora keeps the best checkpoint: the trainer must have tracked it by eval_loss."""
    cfg = compose_config(
        [
            "experiment=hira_solar_lora",
            "model=tiny",
            "data=sample",
            "logger=none",
            "train.epochs=2",
            "train.per_device_batch_size=16",
            "train.gradient_accumulation_steps=1",
            "train.max_length=512",
        ]
    )
    metrics = run_training(cfg, JobInfo(run_dir=tmp_path / "best"))
    states = (tmp_path / "best" / "checkpoints").glob("checkpoint-*/trainer_state.json")
    last = max(states, key=lambda p: int(p.parent.name.split("-")[1]))
    state = json.loads(last.read_text())
    evals = [h["eval_loss"] for h in state["log_history"] if "eval_loss" in h]
    assert state["best_metric"] == pytest.approx(min(evals))
    assert metrics["eval_loss"] == pytest.approx(min(evals), rel=1e-4)


def test_grid_sweep_2x2_gives_four_runs_in_one_wandb_group(tmp_path):
    sweep = tmp_path / "sweep"
    out = _cli(
        "-m",
        "method=lora,freeze",
        "train.learning_rate=1e-4,3e-4",
        f"hydra.sweep.dir={sweep}",
        "train.max_steps=2",
        "train.save_strategy=no",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    job_dirs = sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name.split("_", 1)[0]))
    assert [p.name.split("_", 1)[0] for p in job_dirs] == ["0", "1", "2", "3"]
    seen = {}
    for job_dir in job_dirs:
        runs = find_offline_runs(job_dir)
        assert len(runs) == 1, f"{job_dir} has {len(runs)} W&B runs"
        record = read_offline_run(runs[0])
        method, lr = record["config"]["method"]["name"], record["config"]["train"]["learning_rate"]
        seen[(method, lr)] = record
        assert (
            f"method:{method}" in record["tags"] and "model:tiny" in record["tags"] and "data:sample" in record["tags"]
        )
        assert record["group"] == f"sweep-{sweep.name}"
        assert f"method={method}" in record["name"] and "train.learning_rate=" in record["name"]
        assert record["config"]["model"]["name"] == "tiny"
        assert json.loads((job_dir / "metrics.json").read_text())["global_step"] == 2
    assert set(seen) == {(m, lr) for m in ("lora", "freeze") for lr in (1e-4, 3e-4)}
    assert len({r["id"] for r in seen.values()}) == 4
    assert json.loads((sweep / "sweep_summary.json").read_text())["counts"] == {"ok": 4}


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["model=exaone"], "model=exaone: cannot load LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct@553ea250"),
        (["model=tiny", "model.path=/nonexistent/exaone"], "model.path=/nonexistent/exaone has no config.json"),
        (["data=aihub"], "data.sources.aihub.path"),
        (["data=hira"], "data.sources.hira.path"),
        (
            ["method=freeze", "method.trainable_layers=9"],
            "method.trainable_layers=9 but model=tiny has 4 decoder blocks",
        ),
        (["train.learning_rate=0"], "train.learning_rate=0.0 must be > 0"),
    ],
)
def test_first_hour_errors_are_one_line(args, fragment, tmp_path):
    out = _cli(*args, f"hydra.run.dir={tmp_path / 'run'}", "logger=none", timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("medft: error:")]
    assert len(errors) == 1 and fragment in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_bad_data_stops_the_run_with_the_report_written(tmp_path):
    """Too many broken lines: one line naming the ratio, and data_report.json says which lines."""
    folder = tmp_path / "hira"
    folder.mkdir()
    good = [
        json.dumps(
            {"instruction": f"본인부담금 질문 {i}", "input": "", "output": "환자가 내는 진료비입니다.", "metadata": {}},
            ensure_ascii=False,
        )
        for i in range(6)
    ]
    (folder / "train.jsonl").write_text("\n".join([*good, "{not json", '{"instruction": "x"}']) + "\n")
    run_dir = tmp_path / "run"
    out = _cli("data=hira", f"data.sources.hira.path={folder}", f"hydra.run.dir={run_dir}", "logger=none")
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("medft: error:")]
    assert len(errors) == 1 and "data.max_skip_ratio" in errors[0], out.stderr[-2000:]
    report = json.loads((run_dir / "data_report.json").read_text())
    skipped = report["sources"]["hira"]["skipped"]
    assert sum(entry["count"] for entry in skipped.values()) == 2
    assert any("train.jsonl:7" in str(entry["examples"]) for entry in skipped.values())


@pytest.mark.parametrize("template", ["llama3_1", "solar"])
def test_other_templates_train_through_the_same_pipeline(template, tmp_path):
    """The tiny tokenizer carries every template's tokens, so Llama 3.1 and SOLAR rows train too."""
    cfg = compose_config(
        [f"model.chat_template={template}", "logger=none", "train.max_steps=3", "train.save_strategy=no"]
    )
    metrics = run_training(cfg, JobInfo(run_dir=tmp_path / template))
    assert metrics["global_step"] == 3 and metrics["train_supervised_tokens"] > 0
    saved = (tmp_path / template / "adapter" / "chat_template.jinja").read_text()
    from medft.text.templates import load_template

    assert saved == load_template(template)


@pytest.mark.slow
def test_full_finetune_memorises_the_hira_sample(tmp_path):
    """With correct labels a model can learn its answers: 40 epochs of full fine-tuning on the
    HIRA sample drive the training loss far below the ~7.9 of a random model."""
    cfg = compose_config(
        [
            "data=sample",
            "~data.sources.aihub",
            "~data.sources.pubmedqa_ko",
            "method=full",
            "logger=none",
            "train.epochs=40",
            "train.learning_rate=2e-3",
            "train.save_strategy=no",
            "train.per_device_batch_size=1",
            "train.logging_steps=10",
            "train.warmup_ratio=0.05",
        ]
    )
    metrics = run_training(cfg, JobInfo(run_dir=tmp_path / "memorise"))
    assert metrics["train_loss"] < 1.5, metrics
