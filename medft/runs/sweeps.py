"""Sweep jobs that fail are recorded, not fatal; a summary when the sweep ends.

Hydra re-raises a job's exception after the job and so ends the whole sweep: one bad
learning rate (or one OOM) would cost every trial after it. In a sweep medft catches
the job's error, writes ``failed.json`` into the job's run dir, logs one line, and
returns no value (Optuna records the trial as failed). Preemption and Ctrl-C still
stop the sweep: they are about the machine, not the trial.
"""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

from medft.runs.rundir import RunDir
from medft.runtime.errors import MedftError

log = logging.getLogger("medft")

SUMMARY = "sweep_summary.json"


def record_failure(run_dir: Path, err: BaseException) -> None:
    from medft.runs import rundir

    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_json(
        RunDir(run_dir).failed,
        {
            "error": str(err) or type(err).__name__,
            "type": type(err).__name__,
            "user_error": isinstance(err, MedftError),
            "traceback": "".join(traceback.format_exception(err)),
        },
    )


def job_status(run_dir: Path) -> dict[str, Any]:
    folder = RunDir(run_dir)
    if folder.metrics.is_file():
        return {"status": "ok"}
    if folder.failed.is_file():
        try:
            failure = json.loads(folder.failed.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            failure = {"error": f"{RunDir.FAILED} unreadable"}
        return {"status": "failed", "error": failure.get("error", "")}
    return {"status": "unfinished"}


def summarize(sweep_dir: Path) -> dict[str, Any]:
    """Status of every job folder in a sweep dir (folders with a resolved config)."""
    jobs = {}
    for run_dir in sorted(p for p in sweep_dir.iterdir() if RunDir(p).config.is_file() or RunDir(p).failed.is_file()):
        jobs[run_dir.name] = job_status(run_dir)
    counts: dict[str, int] = {}
    for job in jobs.values():
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    return {"sweep_dir": str(sweep_dir), "counts": counts, "jobs": jobs}


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra is a dependency
    Callback = object  # type: ignore[assignment,misc]


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, count jobs by status and say what failed."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        from medft.runs import rundir

        summary = summarize(sweep_dir)
        rundir.write_json(sweep_dir / SUMMARY, summary)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
        print(f"medft: sweep {sweep_dir}: {counts or 'no jobs'}")
        for name, job in summary["jobs"].items():
            if job["status"] == "failed":
                print(f"medft:   {name} failed: {job['error'].splitlines()[0] if job['error'] else ''}")
        print(f"medft: compare the runs with: python -m medft.compare {sweep_dir}")
        if summary["counts"].get("failed"):
            raise SystemExit(1)
