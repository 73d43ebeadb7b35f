"""GPU-only paths: run where CUDA is present, reported as skipped elsewhere."""

from __future__ import annotations

import json

import pytest

from medft.training.pipeline import JobInfo, run_training

from conftest import compose_config

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("method", ["qlora", "lora"])
def test_cuda_run_uses_bf16_and_reports_peak_memory(method, tmp_path):
    cfg = compose_config(
        [f"method={method}", "model.dtype=auto", "logger=none", "train.max_steps=4", "train.save_strategy=no"]
    )
    metrics = run_training(cfg, JobInfo(run_dir=tmp_path / method))
    manifest = json.loads((tmp_path / method / "manifest.json").read_text())
    assert manifest["device"] == "cuda" and manifest["compute"]["bf16"] is True
    assert manifest["compute"]["quantized_4bit"] is (method == "qlora")
    assert metrics["peak_memory_gb"] and metrics["peak_memory_gb"] > 0
    assert metrics["eval_loss"] < metrics["eval_loss_initial"] + 1e-3


@pytest.mark.gpu
def test_cuda_fast_path_is_chosen_and_recorded(tmp_path):
    """On CUDA: bf16, TF32, SDPA or flash attention, Liger when installed, all in the manifest."""
    import json

    import torch

    from medft.training.pipeline import JobInfo, run_training
    from medft.training.trainer import liger_available

    from conftest import compose_config

    cfg = compose_config(["train.max_steps=2", "logger=none", "model.dtype=auto", "model.attn_implementation=auto"])
    run_training(cfg, JobInfo(run_dir=tmp_path / "run"))
    compute = json.loads((tmp_path / "run" / "manifest.json").read_text())["compute"]
    assert compute["bf16"] is torch.cuda.is_bf16_supported()
    assert compute["tf32"] is (torch.cuda.get_device_capability()[0] >= 8)
    assert compute["attn_implementation"] in ("sdpa", "flash_attention_2")
    assert compute["liger"] is liger_available()


def test_cuda_plain_loss_equals_the_models_own_in_bf16(tmp_path):
    """train.fused_loss=false on CUDA: supervised-only head and no padding mask, same loss as the model's."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from medft.config.resolve import resolve
    from medft.data.cache import prepare_data
    from medft.modeling import methods, models
    from medft.runtime.devices import device_facts
    from medft.text import labels
    from medft.text.templates import get_spec
    from medft.training import trainer

    cfg = compose_config(["model.dtype=bfloat16", "train.fused_loss=false"])
    source = models.resolve_source(cfg.model)
    tokenizer = models.load_tokenizer(cfg.model, source)
    datasets, _ = prepare_data(cfg.data, progress=False)
    tokenized, _ = labels.tokenize_splits(datasets, tokenizer, get_spec("exaone3_5"), 512, progress=False)
    rows = tokenized["train"].remove_columns(["id"]).select(range(4))
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(list(rows))
    batch = {k: v.cuda() for k, v in batch.items()}
    model = models.load_model(cfg.model, cfg.method, "cuda", source)
    model = methods.apply_method(model, cfg.model, cfg.method, gradient_checkpointing=False).eval()
    with torch.no_grad():
        expected = model(**batch, use_cache=False).loss.item()
    args = trainer.sft_config(cfg, tmp_path, resolve(cfg, device_facts()), [], False)
    sft = trainer.build_trainer(model, tokenizer, args, rows, None, fused_loss=False)
    with torch.no_grad():
        loss = sft.compute_loss(model, dict(batch)).item()
    assert loss == pytest.approx(expected, rel=2e-2)  # bf16: the unmasked causal kernel rounds differently


def test_cuda_freeze_in_bf16_keeps_float32_masters(tmp_path, monkeypatch):
    """On CUDA (bf16 autocast): the top blocks train as float32 masters and nearly every element moves."""
    from test_precision import _freeze_run

    metrics, caught = _freeze_run(tmp_path, monkeypatch, "bfloat16")
    matrices = {n: w for n, w in caught["trained"].items() if w.dim() == 2 and n.startswith("model.layers.")}
    assert all(w.dtype.is_floating_point and w.element_size() == 4 for w in matrices.values())
    moved = sum(int((w.cpu() != caught["start"][n].float().cpu()).sum()) for n, w in matrices.items())
    assert moved / sum(w.numel() for w in matrices.values()) >= 0.9
    assert metrics["eval_loss"] < metrics["eval_loss_initial"]
