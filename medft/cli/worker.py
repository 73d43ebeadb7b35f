"""python -m medft.worker <run dir>: one rank of a multi-process job (started by medft.cli.train).

Reads the config the parent froze into ``<run dir>/launch/`` instead of composing its
own, so every rank sees the same values and the same run dir. Rank 0 reports an error
or a preemption back to the parent through ``launch/error.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load_frozen(run_dir: Path):
    from medft.config import load_config
    from medft.training.distributed import FROZEN
    from medft.training.pipeline import JobInfo

    folder = run_dir / FROZEN
    cfg = load_config(folder / "config.yaml")
    job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    sweep_dir = job.get("sweep_dir")
    return cfg, JobInfo(run_dir=run_dir, overrides=job["overrides"], sweep_dir=Path(sweep_dir) if sweep_dir else None)


def main(argv: list[str]) -> int:
    from medft.runtime.distributed import is_main_process
    from medft.runtime.errors import MedftError
    from medft.training import distributed
    from medft.training.checkpoints import Preempted
    from medft.training.pipeline import run_training

    run_dir = Path(argv[0])
    cfg, job = load_frozen(run_dir)
    error_file = run_dir / distributed.FROZEN / "error.json"
    try:
        run_training(cfg, job)
    except Preempted as stop:
        if is_main_process():
            error_file.write_text(
                json.dumps({"preempted": True, "step": stop.step, "signal": int(stop.signum)}), encoding="utf-8"
            )
        return 143
    except Exception as err:
        if is_main_process():
            error_file.write_text(
                json.dumps({"error": str(err), "type": type(err).__name__, "user_error": isinstance(err, MedftError)}),
                encoding="utf-8",
            )
        if isinstance(err, MedftError):
            if is_main_process():
                print(f"medft: error: {err}", file=sys.stderr)
            return 2
        raise
    return 0


def run() -> None:
    """`python -m medft.worker` and `medft worker` start here."""
    import logging

    from medft.runtime import console

    console.setup()  # the parent's verbosity, from the environment
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] rank %(rank)s - %(message)s")
    from medft.runtime.distributed import rank

    old_factory = logging.getLogRecordFactory()

    def _with_rank(*args, **kwargs):
        record = old_factory(*args, **kwargs)
        record.rank = rank()
        return record

    logging.setLogRecordFactory(_with_rank)
    if rank() != 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 speaks for the job
    elif len(sys.argv) > 1:  # the job's log file, as for a single-process run
        handler = logging.FileHandler(Path(sys.argv[1]) / "train.log", encoding="utf-8")
        handler.setFormatter(logging.getLogger().handlers[0].formatter)
        logging.getLogger().addHandler(handler)
    sys.exit(main(sys.argv[1:]))
