"""GPU-only paths: run where CUDA is present, reported as skipped elsewhere."""

from __future__ import annotations

import json

import pytest

from medft.pipeline import JobInfo, run_training

from conftest import compose_config

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("method", ["qlora", "lora"])
def test_cuda_run_uses_bf16_and_reports_peak_memory(method, tmp_path):
    cfg = compose_config([f"method={method}", "model.dtype=auto", "logger=none", "train.max_steps=4",
                          "train.save_strategy=no"])  # fmt: skip
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

    from medft.pipeline import JobInfo, run_training
    from medft.trainer import liger_available

    from conftest import compose_config

    cfg = compose_config(["train.max_steps=2", "logger=none", "model.dtype=auto", "model.attn_implementation=auto"])
    run_training(cfg, JobInfo(run_dir=tmp_path / "run"))
    compute = json.loads((tmp_path / "run" / "manifest.json").read_text())["compute"]
    assert compute["bf16"] is torch.cuda.is_bf16_supported()
    assert compute["tf32"] is (torch.cuda.get_device_capability()[0] >= 8)
    assert compute["attn_implementation"] in ("sdpa", "flash_attention_2")
    assert compute["liger"] is liger_available()
