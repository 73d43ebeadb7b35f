"""Two DDP workers (gloo, CPU) train like one process with the same global batch, in one run dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medft.training.distributed import command

from conftest import compose_config

STEPS = 8


def _train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "medft.train",
            f"train.max_steps={STEPS}",
            "logger.mode=offline",
            "train.eval_steps=4",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _only_run_dir(root: Path) -> Path:
    runs = [p for p in (root / "outputs" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run dir, got {runs}"
    return runs[0]


def _evals(run_dir: Path) -> dict[int, float]:
    history = json.loads((run_dir / "history.json").read_text())
    return {h["step"]: h["eval_loss"] for h in history if "eval_loss" in h}


def test_two_gloo_workers_match_one_process_with_the_same_global_batch(tmp_path):
    single_root, ddp_root = tmp_path / "single", tmp_path / "ddp"
    single_root.mkdir()
    ddp_root.mkdir()
    _train(single_root, "train.per_device_batch_size=4")
    out = _train(ddp_root, "train.per_device_batch_size=2", "launcher.nproc_per_node=2")
    assert "torch.distributed.run --nproc_per_node=2" in out.stdout

    single, ddp = _only_run_dir(single_root), _only_run_dir(ddp_root)
    assert not any((ddp / name).exists() for name in ("0", "1", "rank1")), "no per-rank folders"
    a, b = _evals(single), _evals(ddp)
    assert sorted(a) == sorted(b) == [0, 4, STEPS]
    # Step 0, the same model: the validation loss is per token over the whole split, however the
    # rows fall to the workers (23 rows: the last batch is evened out with repeats, left out).
    assert abs(a[0] - b[0]) < 1e-6, (a, b)
    drop = a[0] - a[STEPS]
    assert drop > 0.05, f"the single run barely learned ({a})"
    # Same global batch: the same descent, up to the order the two samplers hand out rows in
    # and how the validation set is split across workers.
    assert abs(a[STEPS] - b[STEPS]) < 0.15 * drop, (a, b)
    assert b[0] - b[STEPS] > 0.8 * drop

    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["global_step"] == STEPS
    assert (ddp / "adapter" / "adapter_model.safetensors").is_file()
    wandb_runs = list((ddp / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1, wandb_runs  # rank 0 alone logs
    manifest = json.loads((ddp / "manifest.json").read_text())
    assert wandb_runs[0].name.endswith(manifest["wandb"]["id"])


def test_launch_commands_for_each_strategy(tmp_path):
    cfg = compose_config(["launcher.nproc_per_node=4"])
    ddp = command(cfg.launcher, tmp_path)
    assert ddp[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=4"] and "--standalone" in ddp
    assert ddp[-3:] == ["-m", "medft.worker", str(tmp_path)]
    multi = command(
        compose_config(
            [
                "launcher.nproc_per_node=8",
                "launcher.nnodes=2",
                "launcher.node_rank=1",
                "launcher.rdzv_endpoint=node0:29500",
            ]
        ).launcher,
        tmp_path,
    )
    assert "--rdzv_endpoint=node0:29500" in multi and "--node_rank=1" in multi and "--standalone" not in multi
    for strategy in ("fsdp", "deepspeed_zero2", "deepspeed_zero3"):
        cmd = command(compose_config(["launcher.nproc_per_node=2", f"launcher.strategy={strategy}"]).launcher, tmp_path)
        config = Path(cmd[cmd.index("--config_file") + 1])
        assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and config.is_file(), cmd
        assert cmd[cmd.index("--num_processes") + 1] == "2"
        import yaml

        shipped = yaml.safe_load(config.read_text())
        assert shipped["distributed_type"] == ("FSDP" if strategy == "fsdp" else "DEEPSPEED")
