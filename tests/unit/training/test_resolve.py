"""Every auto switch decided once, from the config and hand-made device facts (no GPU needed)."""

from __future__ import annotations

import dataclasses

import pytest

from medft.config.resolve import Resolved, resolve
from medft.runtime.devices import DeviceFacts, device_facts, pictured_facts
from medft.runtime.errors import ConfigError
from medft.training import memory, trainer

CPU = DeviceFacts(kind="cpu")
AMPERE = DeviceFacts(kind="cuda", cuda_bf16=True, capability=(8, 0))
TURING = DeviceFacts(kind="cuda", cuda_bf16=False, capability=(7, 5))  # a T4: no bf16, no TF32
FAST = dataclasses.replace(AMPERE, flash_attn=True, liger=True)


def test_cuda_with_bf16(compose):
    r = resolve(compose(["model.attn_implementation=auto", "model.dtype=auto"]), AMPERE)
    assert (r.device, r.weights_dtype, r.bf16, r.fp16, r.tf32) == ("cuda", "bfloat16", True, False, True)
    assert r.gradient_checkpointing and r.fused_loss and not r.liger
    assert r.attention == "sdpa"  # flash-attn not installed
    assert r.packing is False and r.group_by_length  # no varlen kernel: padded, length-grouped batches
    assert r.compute_bytes == 2 and r.weight_bytes == 2 and r.autocast


def test_cuda_without_bf16_trains_float16_weights_in_fp16(compose):
    auto = resolve(compose(), TURING)
    assert (auto.weights_dtype, auto.bf16, auto.fp16, auto.tf32) == ("float32", False, False, False)
    half = resolve(compose(["model.dtype=float16"]), TURING)
    assert (half.weights_dtype, half.bf16, half.fp16) == ("float16", False, True)
    assert half.autocast and half.compute_bytes == 2
    forced = resolve(compose(["model.dtype=float16", "train.bf16=true"]), AMPERE)
    assert forced.bf16 and not forced.fp16  # bf16 wins over fp16


def test_cpu(compose):
    r = resolve(compose(), CPU)
    assert (r.device, r.weights_dtype, r.bf16, r.fp16, r.tf32) == ("cpu", "float32", False, False, False)
    assert not r.gradient_checkpointing and not r.fused_loss and not r.liger
    assert r.attention == "sdpa" and r.packing is False and r.group_by_length
    assert r.compute_bytes == 4 and not r.autocast
    assert {"bf16", "gradient_checkpointing", "fused_loss", "liger", "tf32", "packing"} <= r.auto
    explicit = resolve(compose(["train.gradient_checkpointing=true", "train.fused_loss=true"]), CPU)
    assert explicit.gradient_checkpointing and explicit.fused_loss
    assert "gradient_checkpointing" not in explicit.auto


def test_flash_where_it_can_run_else_sdpa(compose):
    auto = compose(["model.attn_implementation=auto", "model.dtype=bfloat16"])
    assert resolve(auto, FAST).attention == "flash_attention_2"
    assert resolve(auto, FAST).packing is None  # the isolation probe decides
    assert resolve(auto, dataclasses.replace(FAST, flash_attn=False)).attention == "sdpa"
    assert resolve(auto, dataclasses.replace(CPU, flash_attn=True)).attention == "sdpa"
    assert resolve(compose(["model.attn_implementation=auto", "model.dtype=float32"]), FAST).attention == "sdpa"
    assert resolve(compose(["model.attn_implementation=eager"]), FAST).attention == "eager"
    assert resolve(compose(["model=exaone"]), CPU).attention == "sdpa"


def test_liger_on_and_off(compose):
    cfg = compose()
    assert resolve(cfg, FAST).liger and not resolve(cfg, AMPERE).liger and not resolve(cfg, CPU).liger
    assert not resolve(compose(["train.liger=false"]), FAST).liger
    assert resolve(compose(["train.liger=true"]), FAST).liger
    with pytest.raises(ConfigError, match=r"train\.liger=true needs liger-kernel"):
        resolve(compose(["train.liger=true"]), AMPERE)
    with pytest.raises(ConfigError, match=r"train\.liger=true needs a CUDA GPU"):
        resolve(compose(["train.liger=true"]), dataclasses.replace(CPU, liger=True))
    # The planner pictures a device: forced settings are taken as given there.
    assert resolve(compose(["train.liger=true"]), dataclasses.replace(CPU, pictured=True)).liger


def test_packing_settles_group_by_length(compose):
    flash = compose(["model.attn_implementation=auto", "model.dtype=bfloat16"])
    probing = resolve(flash, FAST)
    assert probing.with_packing(True).packing is True and not probing.with_packing(True).group_by_length
    assert probing.with_packing(True).flatten_packs
    assert probing.with_packing(False).group_by_length
    forced = resolve(compose(["train.packing=true"]), CPU)
    assert forced.packing is True and not forced.group_by_length and not forced.flatten_packs
    assert not resolve(compose(["train.packing=false", "train.group_by_length=false"]), CPU).group_by_length


def test_memory_planner_decides_gradient_checkpointing(compose, tiny_source):
    """On CUDA the planner's answer flows into the settings, unless the config set it."""
    cfg = compose(["train.per_device_batch_size=8", "train.max_length=1024"])
    r = resolve(cfg, AMPERE)
    shape = memory.shape_from_source(cfg.model, tiny_source)
    without = memory.estimate_for_config(cfg, shape, resolved=r, gradient_checkpointing=False).total
    with_gc = memory.estimate_for_config(cfg, shape, resolved=r, gradient_checkpointing=True).total
    ample = memory.plan_memory(cfg, tiny_source, r, free_bytes=4 * without)
    assert r.with_memory_plan(ample["checkpointing_needed"]).gradient_checkpointing is False
    tight = memory.plan_memory(cfg, tiny_source, r, free_bytes=int((with_gc + without) / 2 / 0.9))
    assert r.with_memory_plan(tight["checkpointing_needed"]).gradient_checkpointing is True
    pinned = compose(["train.per_device_batch_size=8", "train.max_length=1024", "train.gradient_checkpointing=false"])
    fixed = resolve(pinned, AMPERE)
    assert memory.plan_memory(pinned, tiny_source, fixed, free_bytes=4 * without)["checkpointing_needed"] is None
    assert fixed.with_memory_plan(True).gradient_checkpointing is False  # the config's setting stands


def test_planner_and_trainer_read_the_same_settings(compose, tmp_path):
    cfg = compose(["model.attn_implementation=auto", "model.dtype=float16"])
    r = resolve(cfg, TURING)
    shape = memory.ModelShape(hidden=64, layers=2, intermediate=128, vocab=256, heads=4, kv_heads=4, head_dim=16)
    settings = memory.estimate_for_config(cfg, shape, resolved=r).settings
    assert settings["gradient_checkpointing"] == r.gradient_checkpointing
    assert (settings["weight_dtype_bytes"], settings["compute_dtype_bytes"]) == (2, 2)
    assert settings["attention"] == r.attention and settings["loss"] == "chunked" and settings["device"] == "cuda"
    cpu = resolve(cfg, CPU).with_packing(False)
    args = trainer.sft_config(cfg, tmp_path, cpu, [], False)
    assert (args.bf16, args.fp16, args.gradient_checkpointing) == (cpu.bf16, cpu.fp16, cpu.gradient_checkpointing)
    assert args.use_liger_kernel == cpu.liger and args.train_sampling_strategy == "group_by_length"


def test_resolved_is_frozen_and_serialisable(compose):
    r = resolve(compose(), CPU)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.bf16 = True  # type: ignore[misc]
    record = r.as_dict()
    assert record["device"] == "cpu" and isinstance(record["auto"], list)
    assert Resolved(**{**record, "auto": frozenset(record["auto"])}) == r


def test_facts_of_this_machine():
    facts = device_facts()
    assert facts.kind in ("cpu", "cuda") and facts.world_size >= 1 and not facts.pictured
    assert pictured_facts("cpu").pictured and pictured_facts("cuda").kind == "cuda"
    if facts.kind == "cpu":
        assert pictured_facts("cuda").cuda_bf16  # planning without a GPU assumes a current one


def test_resolve_imports_nothing_above_config():
    import ast
    from pathlib import Path

    import medft.config.resolve as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "torch" not in imported
    assert all(not m.startswith("medft.") or m.split(".")[1] in ("config", "runtime") for m in imported)
