"""``resume=auto|<run dir>|<checkpoint>``: continue a run in its own run directory.

Before Hydra starts, ``resume=<path>`` is turned into the run's own overrides plus a
pinned ``hydra.run.dir``, so a resumed run writes into the directory it started in and
the user does not have to retype the command. ``resume=auto`` without a path finds the
newest unfinished run with the same overrides (or, in a sweep with a pinned
``hydra.sweep.dir``, each job's own directory). Inside the job, the config is checked
against the frozen one: a resumed run must be the same run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medft.runs.rundir import RunDir
from medft.runtime.errors import ConfigError
from medft.training.checkpoints import check_resumable, checkpoint_step, latest_complete

log = logging.getLogger("medft")

RUNS_DIR = Path("outputs/runs")
# Keys that may differ between the interrupted and the resumed job: they change where
# things are reported or how fast data loads, never what is trained.
MAY_DIFFER = (
    "resume",
    "logger.mode",
    "train.dataloader_num_workers",
    "train.eval_benchmarks",
    "train.eval_benchmarks_every",
)
_NOT_RUN_IDENTITY = ("resume=", "hydra.", "logger.mode=", "+resume=")


def _value(argv: list[str], key: str) -> str | None:
    for arg in argv:
        for prefix in (f"{key}=", f"+{key}=", f"++{key}="):
            if arg.startswith(prefix):
                return arg[len(prefix) :]
    return None


def _identity(overrides: list[str]) -> list[str]:
    return sorted(o for o in overrides if not o.startswith(_NOT_RUN_IDENTITY))


def stored_overrides(run_dir: Path) -> list[str]:
    import yaml

    path = RunDir(run_dir).hydra_overrides
    try:
        return [str(o) for o in (yaml.safe_load(path.read_text(encoding="utf-8")) or [])]
    except OSError:
        raise ConfigError(f"resume={run_dir}: no .hydra/overrides.yaml there; is it a medft run directory?") from None


def run_dir_of(path: Path) -> Path:
    """A run dir, or a checkpoint inside one (<run>/checkpoints/checkpoint-N)."""
    if not path.exists():
        raise ConfigError(f"resume={path}: no such file or folder (give a run directory, a checkpoint, or auto)")
    if checkpoint_step(path) is not None:
        return path.parent.parent
    return path


def _is_finished(run_dir: Path) -> bool:
    return RunDir(run_dir).metrics.is_file()


def find_unfinished(overrides: list[str], runs_dir: Path = RUNS_DIR) -> Path | None:
    """The newest run under outputs/runs started with the same overrides and not finished."""
    wanted = _identity(overrides)
    candidates = sorted((p for p in runs_dir.glob("*") if RunDir(p).hydra_overrides.is_file()), reverse=True)
    for run_dir in candidates:
        if _is_finished(run_dir) or RunDir(run_dir).failed.exists():
            continue
        if _identity(stored_overrides(run_dir)) == wanted:
            return run_dir
    return None


def rewrite_argv(argv: list[str]) -> list[str]:
    """Pin the run dir (and restore the run's overrides) for a resumed single run."""
    resume = _value(argv, "resume")
    if not resume or any(a in ("-m", "--multirun") for a in argv) or _value(argv, "hydra.run.dir"):
        return argv
    others = [a for a in argv if _value([a], "resume") is None]
    if resume in ("auto", "null", "none"):
        if resume != "auto":
            return argv
        found = find_unfinished(others)
        if found is None:
            return argv  # nothing to continue: a fresh run, which the job will log
        print(f"medft: resume=auto continues {found}")
        return [*others, f"hydra.run.dir={found}", "resume=auto"]
    target = Path(resume).expanduser()
    run_dir = run_dir_of(target)
    saved = [o for o in stored_overrides(run_dir) if _value([o], "resume") is None]
    # The run's own overrides first; anything typed now comes later and wins (the job then
    # checks that the result is still the same run).
    return [*saved, *others, f"hydra.run.dir={run_dir}", f"resume={target}"]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def check_same_run(stored: dict, current: dict, run_dir: Path) -> None:
    """Refuse to continue a run under a different config (one line naming the keys)."""
    before, after = _flatten(stored), _flatten(current)
    changed = sorted(
        k for k in set(before) | set(after) if before.get(k) != after.get(k) and not k.startswith(MAY_DIFFER)
    )
    if changed:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed[:4])
        more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
        raise ConfigError(
            f"resume: {run_dir} was trained with a different config ({shown}{more}); "
            f"drop those overrides to continue it, or start a new run without resume="
        )


def find_checkpoint(resume: str, run_dir: Path) -> Path | None:
    """The checkpoint to continue from: the named one, or the latest complete one in run_dir."""
    if resume != "auto":
        target = Path(resume).expanduser()
        if checkpoint_step(target) is not None:
            return check_resumable(target)
    return latest_complete(RunDir(run_dir).checkpoints)
