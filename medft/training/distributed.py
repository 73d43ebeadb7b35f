"""Several processes per job without several run dirs.

Started under torchrun, every rank would run Hydra and resolve ``${now:}`` itself, so
each would create its own run dir (a known Hydra trap). Instead the parent process –
the one the user started, or a sweep job – composes the config, freezes it into the
run dir, and starts the workers (``python -m medft.worker <run dir>``) with torchrun,
or with ``accelerate launch`` for FSDP/DeepSpeed. Workers read the frozen config; only
rank 0 writes files, logs to W&B and saves weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from medft.config import CONF_DIR
from medft.runs.rundir import RunDir
from medft.runtime.distributed import WORKER_ENV, is_worker
from medft.runtime.errors import MedftError

FROZEN = "launch"  # <run dir>/launch/{config.yaml,job.json,error.json}


def wants_workers(cfg) -> bool:
    launcher = cfg.get("launcher")
    return launcher is not None and (launcher.nproc_per_node > 1 or launcher.nnodes > 1) and not is_worker()


def run_job(cfg, job) -> dict[str, Any]:
    """Train in this process, or through workers when the launcher asks for several."""
    from medft.training.pipeline import run_training

    if not wants_workers(cfg):
        return run_training(cfg, job)
    return launch(cfg, job)


def freeze(cfg, job, run_dir: Path) -> Path:
    from omegaconf import OmegaConf

    from medft.config import to_container, validate

    validate(cfg)  # a bad config fails here once, not in every worker
    folder = run_dir / FROZEN
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(to_container(cfg)), folder / "config.yaml")
    (folder / "job.json").write_text(
        json.dumps(
            {
                "run_dir": str(run_dir),
                "overrides": job.overrides,
                "sweep_dir": None if job.sweep_dir is None else str(job.sweep_dir),
            }
        ),
        encoding="utf-8",
    )
    (folder / "error.json").unlink(missing_ok=True)
    return folder


def command(launcher, run_dir: Path) -> list[str]:
    """The torchrun (DDP) or accelerate (FSDP, DeepSpeed) command that starts the workers."""
    n, nodes = launcher.nproc_per_node, launcher.nnodes
    strategy = launcher.strategy
    worker = ["-m", "medft.worker", str(run_dir)]
    if strategy == "ddp" and not launcher.accelerate_config:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", f"--nnodes={nodes}"]
        if nodes == 1:
            cmd.append("--standalone")
        else:
            cmd += [
                "--rdzv_backend=c10d",
                f"--rdzv_endpoint={launcher.rdzv_endpoint}",
                "--rdzv_id=medft",
                f"--node_rank={launcher.node_rank}",
            ]
        return [*cmd, *worker]
    config = launcher.accelerate_config or str(CONF_DIR / "accelerate" / f"{strategy}.yml")
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        config,
        "--num_processes",
        str(n * nodes),
        "--num_machines",
        str(nodes),
    ]
    if nodes > 1:
        host, _, port = launcher.rdzv_endpoint.rpartition(":")
        cmd += ["--machine_rank", str(launcher.node_rank), "--main_process_ip", host, "--main_process_port", port]
    return [*cmd, *worker]


def launch(cfg, job) -> dict[str, Any]:
    """Start the workers, wait, and hand back rank 0's metrics (or its error, in one line)."""
    run_dir = job.run_dir
    folder = freeze(cfg, job, run_dir)
    cmd = command(cfg.launcher, run_dir)
    print(f"medft: starting {cfg.launcher.nproc_per_node * cfg.launcher.nnodes} workers: {' '.join(cmd)}")
    env = {**os.environ, WORKER_ENV: "1"}
    # OMP threads: torchrun would otherwise warn and pick 1; share the cores among workers.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cfg.launcher.nproc_per_node)))
    code, received, previous = _wait_forwarding_signals(subprocess.Popen(cmd, env=env))
    error = _read(folder / "error.json")
    if error and error.get("preempted"):
        from medft.training.checkpoints import Preempted, latest_complete

        signum = received or error.get("signal", 15)
        raise Preempted(
            error.get("step", -1), latest_complete(RunDir(run_dir).checkpoints), signum, previous.get(signum)
        )
    if code != 0:
        if error and error.get("user_error"):
            raise MedftError(error["error"])
        detail = error["error"] if error else f"see the worker output above and {run_dir}"
        raise RuntimeError(f"workers exited with status {code}: {detail}")
    return _read(RunDir(run_dir).metrics) or {}


def _wait_forwarding_signals(proc: subprocess.Popen) -> tuple[int, int | None, dict]:
    """SIGTERM/SIGUSR2 to this process reach the workers (as SIGTERM, which torchrun relays;
    SIGUSR2 would end torchrun itself), which checkpoint; this one waits for them."""
    import signal

    from medft.training.checkpoints import STOP_SIGNALS

    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        proc.send_signal(signal.SIGTERM)

    previous = {signum: signal.signal(signum, forward) for signum in STOP_SIGNALS}
    try:
        return proc.wait(), (received[0] if received else None), previous
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
