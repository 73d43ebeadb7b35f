"""Training throughput: medft's default recipe against a naive pad-to-512 Trainer and plain TRL.

    .venv/bin/python benchmarks/train_throughput.py [--model tiny|small] [--repeats 3] [--steps N]
                                                     [--data synthetic|sample] [--method lora] [--wait-idle 120]

Three recipes train the same model on the same conversations for the same number of
optimizer steps with the same rows per batch, in one process, alternating (the order
rotates every repeat so drift hits every variant alike). By default that is one epoch
(``--rows`` / batch steps), so every variant meets its longest batch: peak memory is set
there, and length-grouped batches meet it first while random ones meet it anywhere.

(a) naive: each conversation rendered with the chat template, tokenized with padding and
    truncation to 512, labels = input_ids on every token (the prompt too, as the common
    notebooks do) with the pad positions set to -100 (so pad is never trained on, as with
    HF's DataCollatorForLanguageModeling), plain ``transformers.Trainer`` with
    ``default_data_collator``.
(b) plain TRL ``SFTTrainer`` on the ``messages`` column with TRL's defaults; only output_dir,
    max_steps, the batch size, ``use_cpu``, ``bf16=False`` and ``report_to="none"`` are set. The
    defaults it ran with (max_length, packing, gradient checkpointing, loss masking, ...) are
    printed.
(c) medft's default composition (``hydra.compose`` of conf/train.yaml with ``model=<model>``),
    built from the functions ``medft.training.pipeline.run_training`` uses: ``labels.tokenize_splits``
    (assistant-only labels), ``packing.decide_packing(train.packing)`` then ``pack_rows`` and
    ``RowPackedCollator``, ``trainer.sft_config`` and ``trainer.build_trainer``. Evaluation is off
    (no validation split is passed) and ``train.save_strategy=no``: both would run outside the
    timed window anyway.

All three train the same method, medft's default (``--method``, LoRA unless changed), applied
by ``medft.modeling.methods.apply_method``, so the ratios measure the recipe (labels, padding, packing,
trainer settings) and not the choice of trainable parameters.

Measured per variant (median over repeats): supervised tokens/s (labels != -100, counted in
``Trainer.training_step`` from the batches the loss was computed on), non-pad tokens/s, pad
fraction of the positions processed, seconds per step, from the end of step ``--warmup`` to the
end of the last step, and peak RSS. Because ``ru_maxrss`` never decreases within a process,
RSS is sampled every 20 ms by a thread (psutil) from model loading to the end of training,
after freeing the previous variant (``gc`` + ``malloc_trim``); the table shows the peak above
the RSS at the start of the variant. Peak GPU memory is shown when CUDA is used.

The machine may be shared: every run also records the share of the cores other processes
used while it trained (column ``other%``). With ``--wait-idle S`` each variant first waits up
to S seconds for the others to go quiet and is measured again (``--retries``) when they
took more than 10 % during it.

``--data synthetic`` (the default) generates seeded conversations of Hangul syllables from the
tiny tokenizer's inventory, with question and answer lengths drawn from log-normals in tokens
of a real subword tokenizer (see ``benchmarks/_common.py``): the tiny tokenizer is
character-level, so each drawn token is written as one character. No length distribution of
AI Hub 71762 is publicly documented, so the answer median is anchored on one public answer
record (88 words at the 2.47 Llama 3 tokens per word measured by ``token_lengths.py``: 217
tokens); the spreads and the question median (41 tokens) are assumptions.
``--answer-median`` and ``--question-median`` change the medians.
``--data sample`` uses the shipped samples (``data=sample``) at one token per character.

Ratios (c)/(a) and (c)/(b) of supervised tokens/s are medians of the per-repeat ratios.

Candidate default changes can be measured on (c) without editing medft (the (c) settings
line names them): ``--try-override key=value`` (a Hydra override, e.g. ``train.packing=true``
or ``train.fused_loss=true``, applied to every variant's config) and ``--try-pack-length N``
(packs of N tokens instead of ``train.max_length`` when packing is on).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (  # benchmarks/ is on sys.path when run as a script
    ANSWER_MEDIAN_TOKENS,
    QUESTION_MEDIAN_TOKENS,
    OtherCpu,
    PeakRSS,
    StepMeter,
    compose,
    load_conversations,
    machine_description,
    median,
    offline_environment,
    release_memory,
    wait_for_idle,
)

NAIVE_MAX_LENGTH = 512
SYNTHETIC_ROWS = 480
BUSY_SHARE = 0.1  # other processes above this share of the cores make a run "contended"
VARIANTS = {
    "a": "naive pad-512 + Trainer",
    "b": "TRL SFTTrainer defaults",
    "c": "medft default",
}


@dataclass
class Context:
    cfg: Any
    tokenizer: Any
    spec: Any
    device: str
    steps: int
    batch: int
    warmup: int
    workdir: Path
    data: dict = field(default_factory=dict)
    recipes: dict = field(default_factory=dict)
    tries: dict = field(default_factory=dict)
    wait_idle: float = 0.0


# ----------------------------------------------------------------------------- data per variant


def naive_examples(conversations, tokenizer, max_length: int = NAIVE_MAX_LENGTH):
    """The naive notebook recipe: render, pad and truncate to ``max_length``, train on every real token."""
    from datasets import Dataset

    texts = [tokenizer.apply_chat_template(m, tokenize=False) for m in conversations["messages"]]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length)
    labels = [
        [tok if keep else -100 for tok, keep in zip(ids, mask, strict=True)]
        for ids, mask in zip(enc["input_ids"], enc["attention_mask"], strict=True)
    ]
    return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})


def medft_rows(conversations, ctx: Context):
    from medft.text import labels

    tokenized, report = labels.tokenize_splits(
        {"train": conversations}, ctx.tokenizer, ctx.spec, ctx.cfg.train.max_length, progress=False
    )
    return tokenized["train"].remove_columns(["id"]), report["train"]


def prepare_data(ctx: Context, conversations) -> None:
    ctx.data["a"] = naive_examples(conversations, ctx.tokenizer)
    ctx.data["b"] = conversations.select_columns(["messages"])
    ctx.data["c"], ctx.data["c_report"] = medft_rows(conversations, ctx)


# ----------------------------------------------------------------------------- trainers


def load_model(ctx: Context, gradient_checkpointing: bool):
    from medft.modeling import methods, models

    model = models.load_model(ctx.cfg.model, ctx.cfg.method, ctx.device)
    return methods.apply_method(model, ctx.cfg.model, ctx.cfg.method, gradient_checkpointing=gradient_checkpointing)


def _shared_args(ctx: Context, variant: str) -> dict:
    """What (a) and (b) set; everything else stays at the library's default."""
    return {
        "output_dir": str(ctx.workdir / variant),
        "max_steps": ctx.steps,
        "per_device_train_batch_size": ctx.batch,
        "use_cpu": ctx.device == "cpu",
        "bf16": False,
        "report_to": "none",
    }


def build_a(ctx: Context):
    from transformers import Trainer, TrainingArguments, default_data_collator

    args = TrainingArguments(**_shared_args(ctx, "a"), save_strategy="no")
    model = load_model(ctx, gradient_checkpointing=False)
    ctx.recipes.setdefault(
        "a",
        {
            "max_length": NAIVE_MAX_LENGTH,
            "padding": "max_length",
            "labels": "all non-pad tokens",
            "gradient_checkpointing": args.gradient_checkpointing,
            "learning_rate": args.learning_rate,
        },
    )
    return Trainer(model=model, args=args, train_dataset=ctx.data["a"], data_collator=default_data_collator)


def build_b(ctx: Context):
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**_shared_args(ctx, "b"))
    model = load_model(ctx, gradient_checkpointing=bool(args.gradient_checkpointing))
    ctx.recipes.setdefault(
        "b",
        {
            key: getattr(args, key)
            for key in (
                "max_length",
                "packing",
                "padding_free",
                "assistant_only_loss",
                "completion_only_loss",
                "gradient_checkpointing",
                "learning_rate",
                "logging_steps",
                "pad_to_multiple_of",
            )
        },
    )
    return SFTTrainer(model=model, args=args, train_dataset=ctx.data["b"], processing_class=ctx.tokenizer)


def build_c(ctx: Context):
    """medft.training.pipeline.run_training's composition, minus evaluation, saving and tracking."""
    from dataclasses import replace

    from medft.config.resolve import resolve
    from medft.modeling import methods, models
    from medft.runtime.devices import device_facts
    from medft.training import packing as packing_lib
    from medft.training import trainer as trainer_lib

    cfg = ctx.cfg
    resolved = resolve(cfg, replace(device_facts(free_memory=False), kind=ctx.device))
    model = models.load_model(cfg.model, cfg.method, ctx.device, attention=resolved.attention)
    attention = resolved.attention
    packing, _probe = packing_lib.decide_packing(cfg.train.packing, model, ctx.tokenizer, cfg.model.name, attention)
    resolved = resolved.with_packing(packing)
    gc = resolved.gradient_checkpointing
    model = methods.apply_method(model, cfg.model, cfg.method, gradient_checkpointing=gc)
    flatten = resolved.flatten_packs
    fused_loss = resolved.fused_loss
    args = trainer_lib.sft_config(cfg, ctx.workdir / "c", resolved, [], has_eval=False)
    rows = ctx.data["c"]
    if packing:
        rows = packing_lib.pack_rows(rows, cfg.train.max_length)
    collator = packing_lib.RowPackedCollator(ctx.tokenizer.pad_token_id) if packing and not flatten else None
    ctx.recipes.setdefault(
        "c",
        {
            "max_length": cfg.train.max_length,
            "packing": packing,
            "rows_per_pack": round(len(ctx.data["c"]) / len(rows), 2),
            "flatten_packs": flatten,
            "gradient_checkpointing": gc,
            "bf16": args.bf16,
            "learning_rate": args.learning_rate,
            "logging_steps": args.logging_steps,
            "method": str(getattr(cfg.method.name, "value", cfg.method.name)),
            **ctx.tries,
        },
    )
    return trainer_lib.build_trainer(
        model, ctx.tokenizer, args, rows, None, data_collator=collator, fused_loss=fused_loss
    )


BUILDERS = {"a": build_a, "b": build_b, "c": build_c}


def run_variant(name: str, ctx: Context) -> dict:
    import torch
    from transformers import set_seed

    cuda = torch.cuda.is_available() and ctx.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    set_seed(ctx.cfg.seed)
    meter = StepMeter(ctx.tokenizer.pad_token_id, warmup=ctx.warmup)
    waited = wait_for_idle(ctx.wait_idle) if ctx.wait_idle > 0 else 0.0
    with PeakRSS() as rss:
        trainer = BUILDERS[name](ctx)
        meter.attach(trainer)
        with OtherCpu() as others:
            trainer.train()
    result = meter.summary()
    result["other_cpu"] = others.share
    result["waited_s"] = waited
    result["rss_delta_mib"] = rss.delta_mib
    result["rss_peak_mib"] = rss.peak_mib
    result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    del trainer
    release_memory()
    shutil.rmtree(ctx.workdir / name, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------- experiments (--try-*)


def apply_tries(args, overrides: list[str]) -> dict:
    """Candidate default changes for (c), measured without editing medft (see ``build_c``)."""
    tries = {}
    if args.try_pack_length:
        # Pack into shorter sequences than train.max_length. TRL's bfd truncates rows longer
        # than the pack, so combine with --try-override train.max_length=N to keep rows whole.
        from medft.training import packing as packing_lib

        real = packing_lib.pack_rows
        packing_lib.pack_rows = lambda dataset, max_length: real(dataset, min(max_length, args.try_pack_length))
        tries["try_pack_length"] = args.try_pack_length
    for item in args.try_override:
        overrides.append(item)
        tries.setdefault("try_override", []).append(item)
    return tries


# ----------------------------------------------------------------------------- report


def _fmt_row(label: str, m: dict, cuda: bool) -> str:
    gpu = f" {m['gpu_peak_mib']:>9.0f}" if cuda else ""
    return (
        f"{label:<28} {m['supervised_tok_s']:>11.0f} {m['real_tok_s']:>11.0f} {100 * m['pad_fraction']:>6.1f} "
        f"{m['s_per_step']:>8.3f} {m['supervised_per_step']:>8.0f} {m['positions_per_step']:>8.0f} "
        f"{m['rss_delta_mib']:>9.0f} {100 * m['other_cpu']:>6.0f}{gpu}"
    )


def report(results: dict[str, list[dict]], ctx: Context, args) -> dict:
    cuda = any(r["gpu_peak_mib"] is not None for runs in results.values() for r in runs)
    medians = {}
    for name, runs in results.items():
        medians[name] = {k: median([r[k] for r in runs]) for k in runs[0] if runs[0][k] is not None}
        medians[name].setdefault("gpu_peak_mib", None)
    print()
    print(f"machine: {machine_description()}")
    print(
        f"model={args.model} method={ctx.recipes['c']['method']} data={args.data} rows/batch={ctx.batch} "
        f"steps={ctx.steps} (timed: {ctx.steps - ctx.warmup}) repeats={args.repeats}"
    )
    header = (
        f"{'variant':<28} {'sup tok/s':>11} {'real tok/s':>11} {'pad %':>6} {'s/step':>8} {'sup/step':>8} "
        f"{'pos/step':>8} {'RSS+ MiB':>9} {'other%':>6}" + (f" {'GPU MiB':>9}" if cuda else "")
    )
    print(header)
    print("-" * len(header))
    for name, label in VARIANTS.items():
        print(_fmt_row(f"({name}) {label}", medians[name], cuda))
    print()
    for name, recipe in ctx.recipes.items():
        print(f"({name}) settings: " + ", ".join(f"{k}={v}" for k, v in recipe.items()))
    ratios = {}
    for other in ("a", "b"):
        per_repeat = [
            c["supervised_tok_s"] / o["supervised_tok_s"] for c, o in zip(results["c"], results[other], strict=True)
        ]
        ratios[f"c/{other}"] = median(per_repeat)
        print(
            f"supervised tok/s (c)/({other}): {ratios[f'c/{other}']:.2f}x  "
            f"(per repeat: {', '.join(f'{r:.2f}' for r in per_repeat)})"
        )
    busy = sum(1 for runs in results.values() for r in runs if r["other_cpu"] > BUSY_SHARE)
    if busy:
        print(
            f"note: in {busy} of {sum(len(r) for r in results.values())} runs other processes used > 10% of the "
            f"CPU (column other%); those timings are slowed by contention"
        )
    rss_c, rss_b = medians["c"]["rss_delta_mib"], medians["b"]["rss_delta_mib"]
    ratios["rss c/b"] = rss_c / rss_b if rss_b > 0 else float("nan")
    print(f"peak RSS above start (c) vs (b): {rss_c:.0f} MiB vs {rss_b:.0f} MiB ({ratios['rss c/b']:.2f}x)")
    if cuda:
        print(
            f"peak GPU memory (c) vs (b): {medians['c']['gpu_peak_mib']:.0f} MiB vs "
            f"{medians['b']['gpu_peak_mib']:.0f} MiB"
        )
    return {"medians": medians, "ratios": ratios, "recipes": ctx.recipes, "runs": results}


# ----------------------------------------------------------------------------- main


def setup(
    model: str,
    data: str,
    steps: int,
    batch: int | None,
    warmup: int,
    method: str | None,
    extra_overrides: list[str] | None = None,
    rows: int | None = None,
    lengths: dict | None = None,
) -> tuple[Context, Any]:
    """Compose medft's config for ``model`` and load the tokenizer and conversations."""
    offline_environment()
    from medft.modeling import models
    from medft.runtime.devices import device_kind
    from medft.text.templates import get_spec

    overrides = [
        f"model={model}",
        f"data={data if data == 'sample' else 'sample'}",
        "logger=none",
        "train.save_strategy=no",
    ]
    if method:
        overrides.append(f"method={method}")
    if batch:
        overrides.append(f"train.per_device_batch_size={batch}")
    overrides += list(extra_overrides or [])
    cfg = compose(overrides)
    from medft.config import validate

    validate(cfg)
    tokenizer = models.load_tokenizer(cfg.model)
    workdir = Path(tempfile.mkdtemp(prefix="medft-throughput-"))
    ctx = Context(
        cfg,
        tokenizer,
        get_spec(cfg.model.chat_template),
        device_kind(),
        steps or 0,
        cfg.train.per_device_batch_size,
        warmup,
        workdir,
    )
    conversations = load_conversations(data, cfg, rows or SYNTHETIC_ROWS, **(lengths or {}))
    # One epoch by default: every variant then meets its longest batch, which is where peak
    # memory is set (length-grouped batches put it first; random batches meet it anywhere).
    ctx.steps = steps or max(1, len(conversations) // ctx.batch)
    cfg.train.max_steps = ctx.steps
    return ctx, conversations


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="a conf/model option built from config (tiny, small)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimizer steps per variant and repeat (default: one epoch of the rows)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="steps left out of the timing")
    parser.add_argument("--batch", type=int, default=None, help="rows (packs for (c)) per batch; default train.*")
    parser.add_argument("--data", choices=("synthetic", "sample"), default="synthetic")
    parser.add_argument("--rows", type=int, default=None, help=f"synthetic conversations (default {SYNTHETIC_ROWS})")
    parser.add_argument(
        "--answer-median",
        type=float,
        default=ANSWER_MEDIAN_TOKENS,
        help="synthetic data: median answer length in tokens of a real tokenizer",
    )
    parser.add_argument(
        "--question-median",
        type=float,
        default=QUESTION_MEDIAN_TOKENS,
        help="synthetic data: median question length in tokens",
    )
    parser.add_argument("--method", default=None, help="conf/method option for all variants (default: medft's)")
    parser.add_argument("--variants", default="abc", help="subset to run, e.g. 'ac' (ratios need all three)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="before each variant, wait up to this many seconds for other processes to go quiet",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="with --wait-idle: measure a variant again when others used > 10%% CPU during it",
    )
    parser.add_argument(
        "--try-pack-length",
        type=int,
        default=0,
        help="experiment: (c) packs to this length instead of train.max_length",
    )
    parser.add_argument(
        "--try-override",
        action="append",
        default=[],
        help="experiment: a Hydra override applied to the config (all variants share it)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    overrides: list[str] = []
    tries = apply_tries(args, overrides)
    lengths = {"answer_median": args.answer_median, "question_median": args.question_median}
    ctx, conversations = setup(
        args.model, args.data, args.steps, args.batch, args.warmup, args.method, overrides, args.rows, lengths
    )
    ctx.tries = tries
    ctx.wait_idle = args.wait_idle
    try:
        prepare_data(ctx, conversations)
        names = [n for n in VARIANTS if n in args.variants]
        results: dict[str, list[dict]] = {n: [] for n in names}
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                r = run_variant(name, ctx)
                for _ in range(args.retries if args.wait_idle > 0 else 0):
                    if r["other_cpu"] <= BUSY_SHARE:
                        break
                    print(
                        f"[repeat {repeat + 1}/{args.repeats}] ({name}) discarded: other processes used "
                        f"{100 * r['other_cpu']:.0f}% CPU during the run; measuring again",
                        flush=True,
                    )
                    r = run_variant(name, ctx)
                results[name].append(r)
                print(
                    f"[repeat {repeat + 1}/{args.repeats}] ({name}) {r['supervised_tok_s']:.0f} supervised tok/s, "
                    f"{r['s_per_step']:.3f} s/step ({r['cpu_s_per_step']:.3f} CPU s), RSS "
                    f"+{r['rss_delta_mib']:.0f} MiB, other processes "
                    f"{100 * r['other_cpu']:.0f}% CPU (waited {r['waited_s']:.0f} s)",
                    flush=True,
                )
        if set(names) != set(VARIANTS):
            return {"runs": results, "recipes": ctx.recipes}
        return report(results, ctx, args)
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
