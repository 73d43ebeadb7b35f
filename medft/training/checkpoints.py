"""Checkpoints that resume can trust, and a checkpoint on SIGTERM (preemption).

The Trainer writes ``checkpoint-N/`` file by file (weights, optimizer, scheduler, RNG,
trainer state) with no commit step, so a crash mid-write leaves a folder that looks
like a checkpoint but is not. medft commits each one by writing ``medft-complete.json``
(the size of every file in it) after the Trainer has finished the folder; resume only
picks folders whose marker is present and whose files still have the recorded sizes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
from contextlib import contextmanager
from pathlib import Path

from medft.runtime.errors import ConfigError

log = logging.getLogger("medft")

MARKER = "medft-complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint; the run is not finished."""

    def __init__(self, step: int, checkpoint: Path | None, signum: int = signal.SIGTERM, previous=None):
        self.step, self.checkpoint, self.signum, self.previous = step, checkpoint, signum, previous
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")

    def hand_over(self) -> None:
        """Let whoever handled the signal before medft do so now that the checkpoint is safe
        (SLURM jobs started by submitit requeue themselves on SIGUSR2)."""
        if callable(self.previous):
            self.previous(self.signum, None)


def _write_marker(folder: Path, step: int) -> None:
    files = {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MARKER
    }
    tmp = folder / (MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"global_step": step, "files": files}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(folder / MARKER)


def is_complete(folder: Path) -> bool:
    """True when the marker is there and every file it lists still has its recorded size."""
    marker = folder / MARKER
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(files) and all(
        (folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items()
    )


def checkpoint_step(folder: Path) -> int | None:
    match = _CHECKPOINT.match(folder.name)
    return int(match.group(1)) if match else None


def latest_complete(checkpoints_dir: Path) -> Path | None:
    """The committed checkpoint with the highest step, skipping torn ones (logged)."""
    if not checkpoints_dir.is_dir():
        return None
    candidates = sorted(
        (p for p in checkpoints_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None),
        key=checkpoint_step,
        reverse=True,
    )
    for folder in candidates:
        if is_complete(folder):
            return folder
        log.warning("resume: %s is incomplete (written when the run was killed?); skipping it", folder)
    return None


def check_resumable(folder: Path) -> Path:
    """A checkpoint the user named explicitly: refuse a torn one in one line."""
    if checkpoint_step(folder) is None or not folder.is_dir():
        raise ConfigError(
            f"resume={folder}: not a checkpoint folder (expected <run dir>/checkpoints/checkpoint-<step>)"
        )
    if not is_complete(folder):
        raise ConfigError(
            f"resume={folder}: this checkpoint was not completely written (no valid {MARKER}); "
            f"use resume=auto to take the latest complete one"
        )
    return folder


def callbacks(run_dir: Path) -> list:
    """The Trainer callbacks that commit checkpoints and turn SIGTERM into a checkpoint."""
    from transformers import TrainerCallback

    class CommitCheckpoint(TrainerCallback):
        """Called by the Trainer right after it has written checkpoint-N completely."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    _write_marker(folder, state.global_step)

    class StopOnSignal(TrainerCallback):
        """After the step in flight: save a checkpoint and stop, when SIGTERM has arrived."""

        def __init__(self):
            self.requested = False
            self.signum = signal.SIGTERM
            self.previous: dict = {}
            self.stopped_at: int | None = None

        def preempted(self, checkpoint: Path | None) -> Preempted:
            return Preempted(self.stopped_at, checkpoint, self.signum, self.previous.get(self.signum))

        def on_step_end(self, args, state, control, **kwargs):
            if _any_rank(self.requested):
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return [CommitCheckpoint(), StopOnSignal()]


def _any_rank(flag: bool) -> bool:
    """Ranks receive the signal at different steps; all must stop at the same one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    import torch

    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


# SIGTERM: preemption and `scancel`; SIGUSR2: SLURM's warning before the time limit
# (what submitit asks SLURM to send).
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGUSR2", None)) if s is not None)


@contextmanager
def checkpoint_on_sigterm(stopper):
    """While training runs, SIGTERM/SIGUSR2 ask for a checkpoint instead of killing the process."""

    def request(signum, frame):
        if not stopper.requested:
            log.warning("%s: saving a checkpoint after the current step, then stopping", signal.Signals(signum).name)
            stopper.signum = signum
        stopper.requested = True

    try:
        stopper.previous = {signum: signal.signal(signum, request) for signum in STOP_SIGNALS}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for signum, previous in stopper.previous.items():
            signal.signal(signum, previous)
