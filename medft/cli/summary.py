"""The closing lines every command prints: what it wrote, how long it took, where its W&B run is.

Read from the files a run directory already holds (metrics.json, history.json, manifest.json),
so the numbers are the ones a later look at the run dir finds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _read(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _samples_per_second(run_dir: Path, metrics: dict) -> float | None:
    """The Trainer's own figure (history.json), else rows x epochs over the training time."""
    from medft.runs.rundir import RunDir

    history = _read(RunDir(run_dir).history)
    rates = (
        [row["train_samples_per_second"] for row in history if "train_samples_per_second" in row]
        if isinstance(history, list)
        else []
    )
    if rates:
        return rates[-1]
    seconds, rows, epochs = metrics.get("train_runtime_s"), metrics.get("train_rows"), metrics.get("epochs")
    return rows * epochs / seconds if seconds and rows and epochs else None


def speed_line(run_dir: Path, metrics: dict) -> str | None:
    """Wall time, throughput and peak memory, from the run's metrics.json and history.json."""
    seconds = metrics.get("train_runtime_s")
    if not seconds:
        return None
    steps, epochs = metrics.get("global_step"), metrics.get("epochs")
    done = ", ".join(
        p for p in (f"{steps} steps" if steps is not None else "", f"{epochs:g} epochs" if epochs else "") if p
    )
    line = f"{done} in {duration(seconds)}" if done else f"trained in {duration(seconds)}"
    if metrics.get("runtime_s"):
        line += f" (whole run {duration(metrics['runtime_s'])})"
    rates = []
    samples = _samples_per_second(run_dir, metrics)
    if samples:
        rates.append(f"{samples:.3g} samples/s")
    tokens = metrics.get("train_supervised_tokens")
    if tokens and epochs:
        rates.append(f"{tokens * epochs / seconds:,.0f} supervised tokens/s")
    if rates:
        line += " | " + ", ".join(rates)
    if metrics.get("peak_memory_gb") is not None:
        line += f" | peak GPU memory {metrics['peak_memory_gb']:.2f} GB"
    elif metrics.get("peak_rss_gb") is not None:
        line += f" | peak memory {metrics['peak_rss_gb']:.2f} GB (process RSS)"
    return f"medft: {line}"


def wandb_line(run_dir: Path) -> str | None:
    """The run's W&B run and, offline, the command that uploads it; None with logger=none."""
    from medft.runs.rundir import RunDir
    from medft.runs.tracking import find_offline_runs

    info = _read(RunDir(run_dir).manifest).get("wandb")
    if not info:
        return None
    where = f"W&B run {info.get('id')} ({info.get('mode')}, project {info.get('project')})"
    if info.get("mode") != "offline":
        return f"medft: {where}"
    runs = [p for p in find_offline_runs(run_dir) if p.name.endswith(str(info.get("id")))]
    target = runs[-1] if runs else run_dir / "wandb" / "offline-run-*"
    return f"medft: {where}; upload it with: wandb sync {target}"
