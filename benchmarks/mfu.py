"""Model FLOP utilisation of medft's training recipe: achieved training FLOP/s against the
machine's own matmul rate.

    .venv/bin/python benchmarks/mfu.py [--model small] [--steps 4] [--method full] [--size 2048] [--repeats 5]

1. Ceiling: the median time of a square ``size`` x ``size`` matmul in the training dtype
   (float32 on CPU, bfloat16 on CUDA), FLOP/s = 2 n^3 / t.
2. Achieved: ``--steps`` optimizer steps of variant (c) of ``train_throughput.py`` (medft's
   default composition: assistant-only labels, packing as decided, ``sft_config`` /
   ``build_trainer``) on the synthetic AI Hub-like conversations, timed from the end of step
   ``--warmup`` to the end of the last step. FLOP/s = 6 x params x tokens / seconds, where
   tokens are the non-pad tokens processed and params are the weights that take part in
   matmuls (every parameter except the input embedding table, which is a lookup). Attention
   score FLOPs (QK^T and AV, which grow with sequence length) are left out, as in the usual
   6N estimate, so the figure understates the work of long packs a little. With a method
   that freezes weights (``--method lora``) the weight gradients of frozen matmuls are not
   computed, so the count becomes 2N (forward) + 2N (input gradients) + 2 x trainable params;
   the default ``--method full`` trains everything, where that is exactly 6N. The LM head's
   share is counted for the supervised tokens only: training needs logits only there, and
   medft's loss projects only those (``medft.training.supervised_head``; TRL's fused head on CUDA too).
3. MFU = achieved / ceiling.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import time
import warnings

import train_throughput as tt

from _common import OtherCpu, machine_description, wait_for_idle


def matmul_flops(n: int) -> float:
    """FLOPs of one n x n by n x n matmul (n^2 outputs, n multiply-adds each)."""
    return 2.0 * n**3


def training_flops_per_token(matmul_params: int, trainable_params: int) -> float:
    """Forward 2N, backward 2N for input gradients plus 2 per trainable weight (6N when all train)."""
    return 4.0 * matmul_params + 2.0 * min(trainable_params, matmul_params)


def matmul_rate(size: int, repeats: int, device: str) -> dict:
    """Median FLOP/s of a square matmul in the training dtype of ``device``."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    times = []
    for i in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        if i:  # the first call warms up the kernels
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "size": size,
        "dtype": str(dtype).removeprefix("torch."),
        "seconds": seconds,
        "flops": matmul_flops(size) / seconds,
    }


def param_counts(model) -> dict:
    """Params in matmuls, split into the LM head and the rest (the body), with the trainable
    ones among each. The input embedding table is a lookup, not a matmul, unless it is tied
    to the head."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    body = [p for p in model.parameters() if p is not embedding and p is not head]
    return {
        "body": sum(p.numel() for p in body),
        "body_trainable": sum(p.numel() for p in body if p.requires_grad),
        "head": head.numel(),
        "head_trainable": head.numel() if head.requires_grad else 0,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--method", default="full", help="conf/method option (full: every weight trains, 6N exact)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=None, help="packs (rows) per batch; default train.*")
    parser.add_argument("--size", type=int, default=None, help="matmul size (default 2048 on CPU, 8192 on CUDA)")
    parser.add_argument("--repeats", type=int, default=5, help="matmul repeats")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="wait up to this many seconds for other processes to go quiet before each measurement",
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

    ctx, conversations = tt.setup(args.model, "synthetic", args.steps, args.batch, args.warmup, args.method)
    ctx.wait_idle = args.wait_idle
    try:
        size = args.size or (8192 if ctx.device == "cuda" else 2048)
        if args.wait_idle > 0:
            wait_for_idle(args.wait_idle)
        with OtherCpu() as others:
            ceiling = matmul_rate(size, args.repeats, ctx.device)
        ceiling["other_cpu"] = others.share
        tt.prepare_data(ctx, conversations)
        counts: dict = {}
        real_build = tt.BUILDERS["c"]

        def build_and_count(c):
            trainer = real_build(c)
            counts.update(param_counts(trainer.model))
            return trainer

        tt.BUILDERS["c"] = build_and_count
        try:
            run = tt.run_variant("c", ctx)
        finally:
            tt.BUILDERS["c"] = real_build
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    matmul = counts["body"] + counts["head"]
    trainable = counts["body_trainable"] + counts["head_trainable"]
    body_per_token = training_flops_per_token(counts["body"], counts["body_trainable"])
    head_per_token = training_flops_per_token(counts["head"], counts["head_trainable"])
    achieved = body_per_token * run["real_tok_s"] + head_per_token * run["supervised_tok_s"]
    per_token = body_per_token + head_per_token
    result = {
        "ceiling": ceiling,
        "run": run,
        "params_matmul": matmul,
        "params_trainable": trainable,
        "params_head": counts["head"],
        "flops_per_token": per_token,
        "achieved_flops": achieved,
        "mfu": achieved / ceiling["flops"],
    }
    formula = "6N" if trainable >= matmul else "4N + 2N_trainable"
    recipe = ctx.recipes.get("c", {})
    print()
    print(f"machine: {machine_description()}")
    print(
        f"model={args.model} method={args.method} packing={recipe.get('packing')} "
        f"rows/batch={ctx.batch} steps={args.steps} (timed: {run['steps_timed']})"
    )
    print(
        f"matmul ceiling ({size}x{size} {ceiling['dtype']}, median of {args.repeats}): "
        f"{ceiling['flops'] / 1e9:,.1f} GFLOP/s ({ceiling['seconds'] * 1e3:.1f} ms; other processes "
        f"{100 * ceiling['other_cpu']:.0f}% CPU)"
    )
    print(
        f"params in matmuls N = {matmul:,} (trainable {trainable:,}; LM head {counts['head']:,}); "
        f"FLOPs/token = {formula} = {per_token / 1e9:.3f} GFLOP, the head's share on supervised tokens only"
    )
    print(
        f"training: {run['real_tok_s']:,.0f} non-pad tok/s ({run['supervised_tok_s']:,.0f} supervised), "
        f"{run['s_per_step']:.2f} s/step, "
        f"pad {100 * run['pad_fraction']:.1f} %, other processes {100 * run['other_cpu']:.0f}% CPU"
    )
    print(f"achieved: {achieved / 1e9:,.1f} GFLOP/s (attention scores not counted)")
    print(f"MFU = achieved / ceiling = {100 * result['mfu']:.1f} %")
    return result


if __name__ == "__main__":
    main()
