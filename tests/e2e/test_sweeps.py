"""Sweeps: a failing job does not end the sweep, Optuna studies persist and resume, no secret leaks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

FAKE_SECRETS = {
    "WANDB_API_KEY": "local-0123456789abcdef0123456789abcdef01234567",
    "HF_TOKEN": "hf_FakeTokenForLeakTestXXXXXXXXXXXXXXXX",
    "HUGGING_FACE_HUB_TOKEN": "hf_OtherFakeTokenYYYYYYYYYYYYYYYYYY",
    "AWS_SECRET_ACCESS_KEY": "fakeAwsSecretKeyZZZZZZZZZZZZZZZZZZZZZZZZ",
}


def _train(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "medft.train", *args], cwd=REPO, capture_output=True, text=True, timeout=900, env=env
    )


def _jobs(sweep: Path) -> list[Path]:
    return sorted(
        (p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()), key=lambda p: int(p.name.split("_", 1)[0])
    )


def test_failed_job_is_recorded_and_the_sweep_goes_on_without_leaking_secrets(tmp_path):
    sweep = tmp_path / "sweep"
    out = _train(
        "-m",
        "method=freeze",
        "method.trainable_layers=99,1",
        f"hydra.sweep.dir={sweep}",
        "train.max_steps=2",
        env_extra={**FAKE_SECRETS, "WANDB_MODE": "offline"},
    )
    assert out.returncode == 1, "a sweep with a failed job exits 1"
    failed, ok = _jobs(sweep)
    failure = json.loads((failed / "failed.json").read_text())
    assert "trainable_layers=99" in failure["error"] and failure["user_error"] is True
    assert json.loads((ok / "metrics.json").read_text())["global_step"] == 2, "the job after the failure ran"
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["counts"] == {"failed": 1, "ok": 1}
    assert f"{failed.name} failed: method.trainable_layers=99" in out.stdout

    # No planted secret reaches any file the sweep wrote (configs, manifest, logs, W&B files) or its output.
    scanned = 0
    for path in sweep.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            scanned += 1
            for name, secret in FAKE_SECRETS.items():
                assert secret.encode() not in data, f"{name} leaked into {path}"
    assert scanned > 20 and list(ok.glob("wandb/offline-run-*/*.wandb")), "the W&B run files were scanned"
    for secret in FAKE_SECRETS.values():
        assert secret not in out.stdout + out.stderr


def _trials(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("select number, state from trials order by number").fetchall()


def test_optuna_sweep_of_four_trials_persists_resumes_and_compares(tmp_path):
    sweep = tmp_path / "study"
    args = [
        "sweep=lora_lr_rank",
        f"hydra.sweep.dir={sweep}",
        "train.max_steps=2",
        "train.save_strategy=no",
        "logger=none",
    ]
    out = _train(*args, "hydra.sweeper.n_trials=4")
    assert out.returncode == 0, out.stderr[-3000:]
    assert [state for _, state in _trials(sweep / "optuna.db")] == ["COMPLETE"] * 4
    jobs = _jobs(sweep)
    assert len(jobs) == 4 and all((j / "metrics.json").is_file() for j in jobs)
    values = [json.loads((j / "metrics.json").read_text())["eval_loss"] for j in jobs]
    best = json.loads(json.dumps(__import__("yaml").safe_load((sweep / "optuna_best.yaml").read_text())))
    assert best["best_value"] == pytest.approx(min(values))
    assert "method.lora.r" in best["best_params"] and "train.learning_rate" in best["best_params"]
    # The trials really varied what the search space names.
    configs = [__import__("yaml").safe_load((j / "config.resolved.yaml").read_text()) for j in jobs]
    assert len({c["train"]["learning_rate"] for c in configs}) == 4
    assert {c["method"]["lora"]["r"] for c in configs} <= {8, 16, 32, 64}

    # The same command with a larger budget continues the study: only the new trial runs.
    again = _train(*args, "hydra.sweeper.n_trials=5")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 of 5 trials already done" in again.stdout
    assert len(_trials(sweep / "optuna.db")) == 5 and len(_jobs(sweep)) == 5
    assert _jobs(sweep)[-1].name.startswith("4_")

    shown = subprocess.run(
        [sys.executable, "-m", "medft.compare", str(sweep)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    table = [line for line in shown.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 5
    assert (sweep / "compare.csv").is_file() and (sweep / "compare.md").is_file()
    assert (sweep / "compare_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_trials_are_failed_and_asked_again(tmp_path):
    import optuna

    from hydra_plugins.medft_optuna_sweeper.optuna_sweeper import STUDY_DB, OptunaSweeper

    storage = f"sqlite:///{tmp_path / STUDY_DB}"
    study = optuna.create_study(study_name="medft", storage=storage)
    lost = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # the sweep died during this trial
    sweeper = OptunaSweeper(n_trials=3)
    resumed = sweeper._study(tmp_path)
    states = [t.state.name for t in resumed.get_trials()]
    assert states == ["FAIL", "WAITING"]
    again = resumed.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert again.params == lost.params


def test_search_space_from_hydra_sweep_syntax():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hydra_plugins.medft_optuna_sweeper.optuna_sweeper import search_space

    space, fixed = search_space(
        ["train.max_steps=10", "method.lora.alpha=range(8,33,8)", "train.warmup_ratio=interval(0, 0.1)"],
        {
            "train.learning_rate": "tag(log, interval(1e-5, 1e-3))",
            "method.lora.r": "choice(8, 16)",
            "train.gradient_accumulation_steps": "tag(int, interval(1, 8))",
        },
    )
    assert fixed == ["train.max_steps=10"]
    assert space["train.learning_rate"] == FloatDistribution(1e-5, 1e-3, log=True)
    assert space["method.lora.r"] == CategoricalDistribution([8, 16])
    assert space["method.lora.alpha"] == IntDistribution(8, 32, step=8)
    assert space["train.warmup_ratio"] == FloatDistribution(0.0, 0.1)
    assert space["train.gradient_accumulation_steps"] == IntDistribution(1, 8)


def test_slurm_preset_composes_one_task_per_job_with_requeue():
    from hydra import compose, initialize_config_dir

    from medft.config import CONF_DIR, register_schemas

    register_schemas()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4", "launcher.nproc_per_node=4"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.tasks_per_node == 1 and launcher.gpus_per_node == 4 and cfg.launcher.nproc_per_node == 4
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0


def test_slurm_launcher_without_its_plugin_is_one_line(monkeypatch):
    from medft import cli

    monkeypatch.setattr(cli, "_has_slurm_launcher", lambda: False)
    with pytest.raises(cli.ConfigError, match=r"pip install -e \".\[slurm\]\""):
        cli.check_overrides(["-m", "hydra/launcher=slurm", "method.lora.r=8,16"])


@pytest.mark.slow
def test_submitit_local_runs_each_trial_as_its_own_job(tmp_path):
    sweep = tmp_path / "sweep"
    out = _train(
        "-m",
        "hydra/launcher=submitit_local",
        "method.lora.r=4,8",
        "train.max_steps=2",
        "logger=none",
        "train.save_strategy=no",
        f"hydra.sweep.dir={sweep}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = _jobs(sweep)
    assert len(jobs) == 2 and all((j / "metrics.json").is_file() for j in jobs)
    assert len([p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]) == 2  # one process per trial
