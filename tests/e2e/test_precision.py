"""Updates are not lost to low precision: trainable weights keep float32 masters over bf16 ones."""

from __future__ import annotations

import torch

from medft.training import steps
from medft.training.pipeline import JobInfo, run_training

from conftest import compose_config

# The EXAONE 2.4B freeze preset's optimiser settings, 8 steps on the shipped samples.
FREEZE_BF16 = [
    "logger=none",
    "method=freeze",
    "method.trainable_layers=2",
    "train.learning_rate=1e-5",
    "train.optim=adamw_torch",
    "train.warmup_ratio=0",
    "train.max_steps=8",
    "train.per_device_batch_size=4",
    "train.save_strategy=no",
    "train.logging_steps=4",
]


def _freeze_run(tmp_path, monkeypatch, dtype: str):
    """Train, and capture the top blocks' weights at load and as trained (before the saved copy is rounded)."""
    captured: dict = {}
    real_save = steps.save_artifact

    def capturing_save(sft, model, tokenizer, cfg, run_dir, weights_dtype):
        captured["trained"] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        return real_save(sft, model, tokenizer, cfg, run_dir, weights_dtype)

    from medft.modeling import methods

    real_apply = methods.apply_method

    def capturing_apply(model, *args, **kwargs):
        captured["start"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return real_apply(model, *args, **kwargs)

    monkeypatch.setattr(steps, "save_artifact", capturing_save)
    monkeypatch.setattr(methods, "apply_method", capturing_apply)
    cfg = compose_config([*FREEZE_BF16, f"model.dtype={dtype}"])
    metrics = run_training(cfg, JobInfo(run_dir=tmp_path / dtype))
    return metrics, captured


def test_freeze_in_bfloat16_moves_the_top_blocks_like_float32(tmp_path, monkeypatch):
    bf16, caught = _freeze_run(tmp_path, monkeypatch, "bfloat16")
    matrices = {n: w for n, w in caught["trained"].items() if w.dim() == 2 and n.startswith("model.layers.")}
    assert matrices and all(w.dtype == torch.float32 for w in caught["trained"].values()), "masters must be float32"
    assert all(caught["start"][n].dtype == torch.bfloat16 for n in matrices), "the model must load in bfloat16"
    moved = sum(int((w != caught["start"][n].float()).sum()) for n, w in matrices.items())
    total = sum(w.numel() for w in matrices.values())
    assert moved / total >= 0.9, f"only {moved / total:.1%} of the top blocks' elements moved"

    fp32, _ = _freeze_run(tmp_path, monkeypatch, "float32")
    fall_bf16 = bf16["eval_loss_initial"] - bf16["eval_loss"]
    fall_fp32 = fp32["eval_loss_initial"] - fp32["eval_loss"]
    assert fall_fp32 > 0 and fall_bf16 >= 0.7 * fall_fp32, (fall_bf16, fall_fp32)

    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "bfloat16" / "model" / "model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.bfloat16}, "saved weights come out in the model's dtype"
