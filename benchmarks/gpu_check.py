"""The GPU check: what only a CUDA machine can show, measured in one run and printed as one table.

    .venv/bin/python benchmarks/gpu_check.py [--budget 420] [--skip standins]

(benchmarks/gpu_check.sh runs the `gpu` tests first, then this.) Sections, each timed and
each a row or more of the summary; a section that fails prints its error as its row and the
rest go on:

- freeze in bf16: model=tiny, model.dtype=bfloat16 under bf16 autocast, lr 1e-5, 8 steps:
  share of the top blocks' float32 master elements that moved, share visible at bf16, and the
  validation-loss fall against the same run with float32 weights.
- QLoRA merge fidelity: model=tiny QLoRA, 30 steps, `medft.runs.export merge=true` (dequantized
  base): max |logit(trained) - logit(merged)| against the 4-bit vs 16-bit base gap.
- packing isolation: the probe's max logit difference with sdpa and, when installed,
  flash_attention_2.
- Liger: a short run with train.liger=true when liger-kernel is installed.
- throughput and peak memory: model=small (LoRA and QLoRA) and each real-architecture
  stand-in (tests/standins.py), 20 steps each: supervised tokens/s, peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

ROWS: list[tuple[str, str, str]] = []  # (check, measured, target or note)


def _train(overrides: list[str], run_dir: Path) -> dict:
    from medft.training.pipeline import JobInfo, run_training

    from conftest import compose_config

    return run_training(compose_config(["logger=none", "train.save_strategy=no", *overrides]), JobInfo(run_dir=run_dir))


def freeze_bf16(work: Path) -> None:
    import torch

    from medft.modeling import methods
    from medft.training import steps

    common = [
        "method=freeze",
        "method.trainable_layers=2",
        "train.learning_rate=1e-5",
        "train.warmup_ratio=0",
        "train.max_steps=8",
        "train.per_device_batch_size=4",
    ]
    caught: dict = {}
    real_apply, real_save = methods.apply_method, steps.save_artifact

    def apply(model, *a, **k):
        caught["start"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return real_apply(model, *a, **k)

    def save(sft, model, tok, cfg, run_dir, dtype):
        caught["trained"] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        return real_save(sft, model, tok, cfg, run_dir, dtype)

    methods.apply_method, steps.save_artifact = apply, save
    try:
        bf16 = _train([*common, "model.dtype=bfloat16", "train.bf16=true"], work / "bf16")
        fp32 = _train([*common, "model.dtype=float32", "train.bf16=false"], work / "fp32")
    finally:
        methods.apply_method, steps.save_artifact = real_apply, real_save
    mats = {n: w for n, w in caught["trained"].items() if w.dim() == 2 and n.startswith("model.layers.")}
    total = sum(w.numel() for w in mats.values())
    moved = sum(int((w != caught["start"][n].float()).sum()) for n, w in mats.items()) / total
    visible = sum(int((w.to(torch.bfloat16) != caught["start"][n]).sum()) for n, w in mats.items()) / total
    ratio = (bf16["eval_loss_initial"] - bf16["eval_loss"]) / (fp32["eval_loss_initial"] - fp32["eval_loss"])
    ROWS.append(("freeze bf16: master elements moved", f"{moved:.1%}", ">= 90%"))
    ROWS.append(("freeze bf16: moved as seen at bf16", f"{visible:.1%}", "rounding bound of bf16 compute"))
    ROWS.append(("freeze bf16: val-loss fall vs float32", f"{ratio:.2f}x", ">= 0.7x"))


def qlora_merge(work: Path) -> None:
    import subprocess

    run = work / "qlora"
    _train(["method=qlora", "train.max_steps=30", "train.learning_rate=2e-3"], run)
    out = work / "merged"
    proc = subprocess.run(
        [sys.executable, "-m", "medft.export", f"run={run}", "merge=true", f"output={out}", "export.dtype=bfloat16"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    report = json.loads((out / "export.json").read_text(encoding="utf-8"))
    ROWS.append(
        (
            "QLoRA export: max |logit diff| trained vs merged",
            json.dumps(report.get("fidelity", report))[:90],
            "<= 0.3x the 4-bit vs 16-bit gap",
        )
    )


def packing(work: Path) -> None:
    import importlib.util

    from medft.modeling import models
    from medft.training import packing as packing_lib

    from conftest import compose_config

    kernels = ["sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])
    for kernel in kernels:
        cfg = compose_config(["model.dtype=bfloat16", f"model.attn_implementation={kernel}"])
        source = models.resolve_source(cfg.model)
        model = models.load_model(cfg.model, cfg.method, "cuda", source)
        probe = packing_lib.probe_isolation(model, models.load_tokenizer(cfg.model, source))
        ROWS.append(
            (f"packing isolation ({kernel})", f"{probe.max_abs_diff:.2e}", "isolated" if probe.isolated else "LEAKS")
        )


def liger(work: Path) -> None:
    from medft.training.trainer import liger_available

    if not liger_available():
        ROWS.append(("Liger", "not installed", "pip install liger-kernel"))
        return
    metrics = _train(["train.liger=true", "train.max_steps=10", "model.dtype=bfloat16"], work / "liger")
    ROWS.append(
        ("Liger: 10 steps, val loss", f"{metrics['eval_loss_initial']:.3f} -> {metrics['eval_loss']:.3f}", "falls")
    )


def throughput(work: Path, skip_standins: bool) -> None:
    runs = {"small lora": ["model=small", "method=lora"], "small qlora": ["model=small", "method=qlora"]}
    if not skip_standins:
        import standins

        for preset, build in (
            ("hai_exaone_qlora", lambda r: standins.build_exaone(r, False)),
            ("pubmedqa_exaone_2.4b_freeze", lambda r: standins.build_exaone(r, True)),
            ("hira_solar_lora", standins.build_solar),
            ("pubmedqa_llama_lora", standins.build_llama31),
        ):
            folder = build(work / f"standin-{preset}")
            runs[preset] = [f"experiment={preset}", f"model.path={folder}", "data=sample", "train.eval_steps=0"]
    for name, overrides in runs.items():
        metrics = _train([*overrides, "train.max_steps=20"], work / name.replace(" ", "_"))
        # Supervised tokens of one epoch times the epochs done: the tokens these steps trained on.
        rate = metrics["train_supervised_tokens"] * metrics["epochs"] / metrics["train_runtime_s"]
        ROWS.append(
            (
                f"throughput {name}",
                f"{rate:,.0f} supervised tok/s, peak {metrics['peak_memory_gb']} GiB",
                f"{metrics['train_runtime_s']:.1f} s for 20 steps",
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; sections past it are left out")
    parser.add_argument("--skip", action="append", default=[], help="a section to leave out (repeatable)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        return 2
    logging.disable(logging.WARNING)
    started = time.time()
    sections = {
        "freeze_bf16": freeze_bf16,
        "qlora_merge": qlora_merge,
        "packing": packing,
        "liger": liger,
        "throughput": lambda w: throughput(w, "standins" in args.skip),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, section in sections.items():
            if name in args.skip:
                continue
            if time.time() - started > args.budget:
                ROWS.append((name, "left out", f"past the {args.budget:.0f} s budget"))
                continue
            t0 = time.time()
            try:
                section(Path(tmp) / name)
            except Exception as err:  # one failing section must not hide the others
                traceback.print_exc()
                ROWS.append((name, f"ERROR {type(err).__name__}: {str(err)[:80]}", ""))
            print(f"gpu_check: {name} done in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    gpu = torch.cuda.get_device_name(0)
    print(f"\n## GPU check: {gpu}, torch {torch.__version__}, {time.time() - started:.0f} s\n")
    print("| check | measured | target / note |\n|---|---|---|")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")
    return 1 if any(r[1].startswith("ERROR") for r in ROWS) else 0


if __name__ == "__main__":
    sys.exit(main())
