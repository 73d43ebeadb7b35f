"""`python -m medft.export`: a merged model that plain transformers loads, with a model card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medft.training.pipeline import JobInfo, run_training

from conftest import REPO, compose_config

IDS = torch.tensor([[5, 300, 301, 302, 303, 304, 305, 306]])


def _train(tmp_path_factory, name, overrides):
    run_dir = tmp_path_factory.mktemp(name) / "run"
    run_training(
        compose_config(
            [
                "logger=none",
                "train.max_steps=4",
                "train.save_strategy=no",
                "train.packing=false",
                "train.per_device_batch_size=2",
                "train.learning_rate=5e-3",
                "~data.sources.pubmedqa_ko",
                *overrides,
            ]
        ),
        JobInfo(run_dir=run_dir),
    )
    return run_dir


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    return _train(tmp_path_factory, "lora", ["method=lora"])


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory):
    return _train(tmp_path_factory, "qlora", ["method=qlora"])


def _export(*args):
    out = subprocess.run(
        [sys.executable, "-m", "medft.export", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _max_diff(a, b) -> float:
    return (a - b).abs().max().item()


def _conversation_ids(run_dir):
    """A Korean exchange rendered with the run's template: inputs of the test's own, not the export's rows."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run_dir / "adapter")
    text = tok.apply_chat_template(
        [
            {"role": "user", "content": "두통이 사흘째 계속되는데 병원에 가야 하나요?"},
            {"role": "assistant", "content": "열이나 구토가 함께 있으면 진료를 받으세요."},
        ],
        tokenize=False,
    )
    return torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])


def test_merged_model_loads_plainly_and_matches_the_adapter(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from medft.runs.loading import load_trained

    out = tmp_path / "merged32"
    printed = _export(f"run={lora_run}", "merge=true", "export.dtype=float32", f"output={out}")
    merged = AutoModelForCausalLM.from_pretrained(out)
    adapter = load_trained(lora_run, device="cpu").model
    assert not any("lora" in n for n, _ in merged.named_parameters())
    expected, got = _logits(adapter), _logits(merged)
    assert (expected - got).abs().max().item() < 1e-4
    # The adapter really changed the model, so equality above is not trivial.
    from medft.runs.loading import load_base

    base = load_base(compose_config(), device="cpu").model
    assert (_logits(base) - expected).abs().max().item() > 1e-4
    card = (out / "README.md").read_text(encoding="utf-8")
    for part in (
        "license:",
        "base_model:",
        "## Intended use",
        "## Medical disclaimer",
        "의사의 진단",
        "## Training data",
        "learning rate",
        "validation loss",
    ):
        assert part in card, part
    assert (out / "chat_template.jinja").read_text() == (lora_run / "adapter" / "chat_template.jinja").read_text()
    info = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert info["merge_base"] == "original" and info["trained_model"] == "base + adapter"
    assert info["fidelity"]["inputs"] == "validation split" and info["fidelity"]["rows"] == 4
    assert info["fidelity"]["max_logit_diff"] < 1e-4
    number = f"{info['fidelity']['max_logit_diff']:.4g}"
    assert f"max |logit difference| to the trained model {number}" in printed.stdout
    assert "Merge fidelity: adapter merged into the original base weights, saved in float32" in card


def test_sixteen_bit_export_is_the_default(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from medft.runs.loading import load_trained

    out = tmp_path / "merged16"
    printed = _export(f"run={lora_run}", f"output={out}")
    assert "safetensors shard" in printed.stdout
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert merged.dtype == torch.bfloat16
    adapter = _logits(load_trained(lora_run, device="cpu").model)
    assert (adapter - _logits(merged)).abs().max().item() < 0.05 * adapter.abs().max().item()


def test_qlora_export_is_the_model_that_trained(qlora_run, tmp_path):
    """Merged into the dequantized NF4 weights, the export is within a small part of the 4-bit vs
    16-bit gap of the trained model; merged into the 16-bit originals it is not."""
    from transformers import AutoModelForCausalLM

    from medft.modeling import models
    from medft.runs.export import export_run
    from medft.runs.loading import load_base, load_run_config, load_trained

    out = tmp_path / "merged"
    printed = _export(f"run={qlora_run}", f"output={out}")
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert all(p.dtype == torch.bfloat16 for p in merged.parameters())
    assert getattr(merged.config, "quantization_config", None) is None
    ids, cfg = _conversation_ids(qlora_run), load_run_config(qlora_run)
    trained = _logits(load_trained(qlora_run, device="cpu").model, ids)
    four_bit = _logits(models.load_model(cfg.model, cfg.method, "cpu"), ids)
    gap = _max_diff(four_bit, _logits(load_base(compose_config(), device="cpu").model, ids))
    assert _max_diff(trained, four_bit) > 0.3 * gap  # the adapter is not trivial
    assert _max_diff(trained, _logits(merged, ids)) <= 0.3 * gap

    info = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert info["merge_base"] == "dequantized" and info["trained_model"] == "4-bit NF4 base + adapter"
    number = info["fidelity"]["max_logit_diff"]
    assert 0 < number <= 0.3 * gap
    assert f"max |logit difference| to the trained model {number:.4g}" in printed.stdout
    card = (out / "README.md").read_text(encoding="utf-8")
    assert (
        f"Merge fidelity: adapter merged into the dequantized NF4 base weights it trained against, saved in "
        f"bfloat16; max |logit difference| to the trained model (4-bit NF4 base + adapter) {number:.4g}" in card
    )

    original_cfg = compose_config([f"export.output={tmp_path / 'original'}", "export.merge_base=original"]).export
    original = export_run(qlora_run, original_cfg)
    assert original.info["merge_base"] == "original"
    assert original.info["fidelity"]["max_logit_diff"] > 3 * number
    assert _max_diff(trained, _logits(AutoModelForCausalLM.from_pretrained(original.folder), ids)) > 0.3 * gap


def test_push_to_hub_takes_the_token_from_the_environment_only(lora_run, tmp_path, monkeypatch):
    import huggingface_hub

    from medft.cli import export

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
    export.main([f"run={lora_run}", f"output={out}", "push_to_hub=me/medft-tiny", "export.fidelity_rows=0"])
    assert json.loads((out / "export.json").read_text(encoding="utf-8"))["fidelity"] is None
    assert ("create", "me/medft-tiny", True) in calls and ("upload", out, "me/medft-tiny") in calls
    assert ("token", secret) in calls
    for path in [*out.rglob("*"), *lora_run.rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_missing_run_is_one_line():
    out = subprocess.run([sys.executable, "-m", "medft.export"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "medft: error: say which run to export: python -m medft.export run=outputs/runs/<run>"


@pytest.mark.parametrize("data", ["unreadable", "no_validation"])
def test_fidelity_rows_fall_back_to_test_split_then_a_fixed_conversation(data, tiny_tokenizer, monkeypatch):
    import datasets

    from medft.data import cache
    from medft.runs import merge
    from medft.runtime.errors import DataError

    row = {
        "id": "t/1",
        "messages": [{"role": "user", "content": "기침이 나요"}, {"role": "assistant", "content": "물을 드세요"}],
        "meta": {},
    }

    def prepare_data(data_cfg, progress=True):
        if data == "unreadable":
            raise DataError("data.sources.aihub.path=/nowhere does not exist")
        splits = {"train": [row], "validation": [], "test": [row, row, row]}
        return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}), {}

    monkeypatch.setattr(cache, "prepare_data", prepare_data)
    ids, name = merge.fidelity_inputs(compose_config(), tiny_tokenizer, 2)
    text = tiny_tokenizer.decode(ids[0])
    if data == "unreadable":
        assert name == "fixed conversation" and len(ids) == 1 and "감기에 걸렸을 때" in text
    else:
        assert name == "test split" and len(ids) == 2 and "기침이 나요" in text


def test_model_card_names_the_model_code_only_when_the_manifest_does(tmp_path):
    from medft.runs import model_card

    cfg = compose_config(["method=qlora"])
    export = {"merged": True, "merge_base": "dequantized", "dtype": "bfloat16", "fidelity": None}
    card = model_card.render(tmp_path, cfg, merged=True, dtype="bfloat16", export=export)
    assert "Model code:" not in card
    assert (
        "Merge fidelity: adapter merged into the dequantized NF4 base weights it trained against, saved in "
        "bfloat16; not measured (export.fidelity_rows=0)." in card
    )
    (tmp_path / "manifest.json").write_text(json.dumps({"model_code": "transformers native (exaone4)"}))
    card = model_card.render(tmp_path, cfg, merged=True, dtype="bfloat16", export=export)
    assert "\nModel code: transformers native (exaone4)\n" in card
