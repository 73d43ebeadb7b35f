"""`python -m medft.export`: a merged model that plain transformers loads, with a model card."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medft.pipeline import JobInfo, run_training

from conftest import REPO, compose_config

IDS = torch.tensor([[5, 300, 301, 302, 303, 304, 305, 306]])


def _train(tmp_path_factory, name, overrides):
    run_dir = tmp_path_factory.mktemp(name) / "run"
    run_training(compose_config(["logger=none", "train.max_steps=4", "train.save_strategy=no", "train.packing=false",
                                 "train.per_device_batch_size=2",
                                 "train.learning_rate=5e-3", "~data.sources.pubmedqa_ko", *overrides]),
                 JobInfo(run_dir=run_dir))  # fmt: skip
    return run_dir


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    return _train(tmp_path_factory, "lora", ["method=lora"])


def _export(*args):
    out = subprocess.run([sys.executable, "-m", "medft.export", *args], cwd=REPO, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def _logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits.float()


def test_merged_model_loads_plainly_and_matches_the_adapter(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from medft.runs import load_trained

    out = tmp_path / "merged32"
    _export(f"run={lora_run}", "merge=true", "export.dtype=float32", f"output={out}")
    merged = AutoModelForCausalLM.from_pretrained(out)
    adapter = load_trained(lora_run, device="cpu").model
    assert not any("lora" in n for n, _ in merged.named_parameters())
    expected, got = _logits(adapter), _logits(merged)
    assert (expected - got).abs().max().item() < 1e-4
    # The adapter really changed the model, so equality above is not trivial.
    from medft.runs import load_base

    base = load_base(compose_config(), device="cpu").model
    assert (_logits(base) - expected).abs().max().item() > 1e-4
    card = (out / "README.md").read_text(encoding="utf-8")
    for part in ("license:", "base_model:", "## Intended use", "## Medical disclaimer", "의사의 진단", "## Training data",
                 "learning rate", "validation loss"):  # fmt: skip
        assert part in card, part
    assert (out / "chat_template.jinja").read_text() == (lora_run / "adapter" / "chat_template.jinja").read_text()


def test_sixteen_bit_export_is_the_default(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from medft.runs import load_trained

    out = tmp_path / "merged16"
    printed = _export(f"run={lora_run}", f"output={out}")
    assert "safetensors shard" in printed.stdout
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert merged.dtype == torch.bfloat16
    adapter = _logits(load_trained(lora_run, device="cpu").model)
    assert (adapter - _logits(merged)).abs().max().item() < 0.05 * adapter.abs().max().item()


def test_qlora_run_is_merged_into_a_sixteen_bit_base(tmp_path_factory, tmp_path):
    from transformers import AutoModelForCausalLM

    run_dir = _train(tmp_path_factory, "qlora", ["method=qlora"])
    out = tmp_path / "merged"
    _export(f"run={run_dir}", f"output={out}")
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert all(p.dtype == torch.bfloat16 for p in merged.parameters())
    assert torch.isfinite(_logits(merged)).all()


def test_push_to_hub_takes_the_token_from_the_environment_only(lora_run, tmp_path, monkeypatch):
    import huggingface_hub

    from medft import export

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo, private, exist_ok):
            calls.append(("create", repo, private))

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload", Path(folder_path), repo_id))

    secret = "hf_secretTOKEN_must_not_leak_12345"
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", secret)
    out = tmp_path / "pushed"
    export.main([f"run={lora_run}", f"output={out}", "push_to_hub=me/medft-tiny"])
    assert ("create", "me/medft-tiny", True) in calls and ("upload", out, "me/medft-tiny") in calls
    assert ("token", secret) in calls
    for path in [*out.rglob("*"), *lora_run.rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_missing_run_is_one_line():
    out = subprocess.run([sys.executable, "-m", "medft.export"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "medft: error: say which run to export: python -m medft.export run=outputs/runs/<run>"
