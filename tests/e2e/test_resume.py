"""Kill-safe resume: kill -9 and SIGTERM mid-run, resume, and end where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medft.training import checkpoints, resume

REPO = Path(__file__).resolve().parents[2]
STEPS = 12
ARGS = [f"train.max_steps={STEPS}", "train.save_steps=2", "train.max_length=512", "logger=none", "seed=7"]


def _train(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medft.train", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def _start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "medft.train", *ARGS, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_commit(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    marker = run_dir / "checkpoints" / f"checkpoint-{step}" / checkpoints.MARKER
    deadline = time.time() + timeout
    while not marker.exists():
        assert proc.poll() is None, f"run ended before checkpoint-{step}: {proc.communicate()[1][-2000:]}"
        assert time.time() < deadline, f"no checkpoint-{step} after {timeout} s"
        time.sleep(0.05)


def _adapter(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-6, f"resumed adapter differs from the uninterrupted one by {worst}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = _train(*ARGS, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_kill9_at_random_steps_then_resume_equals_uninterrupted(reference, tmp_path):
    ref = _adapter(reference)
    rng = random.Random(0)
    for kill_after in (2, 6):
        run_dir = tmp_path / f"killed-after-{kill_after}"
        proc = _start(run_dir)
        _wait_for_commit(run_dir, kill_after, proc)
        time.sleep(rng.uniform(0.0, 0.4))  # land anywhere in the steps that follow
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert not (run_dir / "metrics.json").exists(), "the run finished before it could be killed"
        latest = checkpoints.latest_complete(run_dir / "checkpoints")
        assert latest is not None and checkpoints.checkpoint_step(latest) >= kill_after

        done = _train(*ARGS, f"hydra.run.dir={run_dir}", "resume=auto")
        assert done.returncode == 0, done.stderr[-3000:]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["global_step"] == STEPS
        assert metrics["resumed_from"] == str(latest)
        _assert_same_weights(_adapter(run_dir), ref)
        # The step-0 baseline survives the interruption.
        assert metrics["eval_loss_initial"] == json.loads((reference / "metrics.json").read_text())["eval_loss_initial"]


def test_sigterm_saves_a_checkpoint_and_resume_by_run_dir_continues_it(reference, tmp_path):
    run_dir = tmp_path / "preempted"
    proc = _start(run_dir)
    _wait_for_commit(run_dir, 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    assert "stopped by SIGTERM at step" in err and f"resume={run_dir}" in err
    assert not (run_dir / "metrics.json").exists()
    saved = checkpoints.latest_complete(run_dir / "checkpoints")
    stopped_at = int(err.split("stopped by SIGTERM at step ")[1].split(";")[0].split()[0])
    assert saved is not None and checkpoints.checkpoint_step(saved) == stopped_at > 2

    # Only the run dir is given: the run's own overrides come back from .hydra/overrides.yaml.
    done = _train(f"resume={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(saved) and metrics["global_step"] == STEPS
    _assert_same_weights(_adapter(run_dir), _adapter(reference))

    # Resuming a finished run trains nothing and returns its metrics.
    again = _train(f"resume={run_dir}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


def _fake_checkpoint(root: Path, step: int, commit: bool = True) -> Path:
    folder = root / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"x" * (100 + step))
    (folder / "trainer_state.json").write_text("{}")
    if commit:
        checkpoints._write_marker(folder, step)
    return folder


def test_resume_skips_checkpoints_torn_by_a_crash(tmp_path):
    good = _fake_checkpoint(tmp_path, 2)
    _fake_checkpoint(tmp_path, 4, commit=False)  # killed before the commit marker
    truncated = _fake_checkpoint(tmp_path, 6)
    with open(truncated / "adapter_model.safetensors", "r+b") as fh:  # marker written, file torn later
        fh.truncate(10)
    assert checkpoints.latest_complete(tmp_path / "checkpoints") == good
    with pytest.raises(checkpoints.ConfigError, match="not completely written"):
        checkpoints.check_resumable(truncated)
    assert checkpoints.check_resumable(good) == good
    shutil.rmtree(good)
    assert checkpoints.latest_complete(tmp_path / "checkpoints") is None


def test_resume_refuses_a_different_config(tmp_path):
    stored = {"train": {"learning_rate": 2e-4, "epochs": 3}, "logger": {"mode": "offline"}, "resume": None}
    same = {"train": {"learning_rate": 2e-4, "epochs": 3}, "logger": {"mode": "online"}, "resume": "auto"}
    resume.check_same_run(stored, same, tmp_path)  # reporting keys may differ
    changed = {"train": {"learning_rate": 1e-3, "epochs": 3}, "logger": {"mode": "offline"}, "resume": "auto"}
    with pytest.raises(resume.ConfigError, match=r"train.learning_rate: 0.0002 -> 0.001"):
        resume.check_same_run(stored, changed, tmp_path)


def _fake_run(runs: Path, name: str, overrides: list[str], finished: bool = False) -> Path:
    run_dir = runs / name
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if finished:
        (run_dir / "metrics.json").write_text("{}")
    return run_dir


def test_resume_argv_pins_the_run_dir_and_restores_its_overrides(tmp_path, monkeypatch):
    runs = tmp_path / "outputs" / "runs"
    old = _fake_run(runs, "2026-01-01_00-00-00_tiny_sample_lora", ["train.learning_rate=0.001", "method=lora"])
    _fake_run(runs, "2026-01-02_00-00-00_tiny_sample_lora", ["train.learning_rate=0.001", "method=lora"], True)
    _fake_run(runs, "2026-01-03_00-00-00_tiny_sample_lora", ["method=lora"])
    monkeypatch.chdir(tmp_path)

    argv = resume.rewrite_argv([f"resume={old}", "logger.mode=disabled"])
    assert argv == [
        "train.learning_rate=0.001",
        "method=lora",
        "logger.mode=disabled",
        f"hydra.run.dir={old}",
        f"resume={old}",
    ]
    # auto: the newest unfinished run started with the same overrides, in any order.
    found = resume.rewrite_argv(["method=lora", "train.learning_rate=0.001", "resume=auto"])
    assert f"hydra.run.dir={Path('outputs/runs') / old.name}" in found
    # nothing to continue: the arguments pass through and the job starts fresh
    assert resume.rewrite_argv(["method=freeze", "resume=auto"]) == ["method=freeze", "resume=auto"]
    # sweeps resume per job in their pinned sweep dir, not here
    assert resume.rewrite_argv(["-m", "resume=auto", "method=lora"]) == ["-m", "resume=auto", "method=lora"]
    with pytest.raises(resume.ConfigError, match="no such file"):
        resume.rewrite_argv([f"resume={tmp_path / 'nope'}"])


def test_torchrun_started_by_hand_is_refused_in_one_line():
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "medft.train", "train.max_steps=1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "launcher.nproc_per_node" in done.stderr


def test_resumed_job_logs_into_the_interrupted_wandb_run(tmp_path, compose):
    from omegaconf import OmegaConf

    from medft.config import to_container
    from medft.runs import tracking
    from medft.training import pipeline

    cfg = compose(["logger.mode=offline", "resume=auto"])
    resolved = to_container(cfg)
    run_dir = tmp_path / "run"
    first = tracking.start_run(cfg, run_dir, resolved, ["train.max_steps=3"], "g")
    first_id = first.id
    tracking.finish_run(first, 1)
    run_dir.mkdir(exist_ok=True)
    OmegaConf.save(OmegaConf.create(resolved), run_dir / "config.resolved.yaml")
    (run_dir / "manifest.json").write_text(json.dumps({"wandb": {"id": first_id, "mode": "offline"}}))
    _fake_checkpoint(run_dir, 2)

    previous = pipeline._previous_run(cfg, run_dir, resolved)
    assert previous["wandb_id"] == first_id and previous["checkpoint"].name == "checkpoint-2"
    again = tracking.start_run(cfg, run_dir, resolved, ["train.max_steps=3"], "g", run_id=previous["wandb_id"])
    try:
        assert again.id == first_id
    finally:
        tracking.finish_run(again)
    runs = tracking.find_offline_runs(run_dir)
    assert len(runs) == 2 and all(f"-{first_id}" in p.name for p in runs), runs  # one run, two sittings
