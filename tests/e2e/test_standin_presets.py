"""Every experiment preset, end to end, on a stand-in of its real model (tests/standins.py).

Each preset runs with only ``model.path``, ``data`` and step limits changed: a few training
steps through the preset's own method, template and precision; the labels view; export and
reload with plain transformers; ``evaluate eval=heldout``; one chat turn. The EXAONE stand-ins
are in LG's checkpoint layout with remote-code files that raise when imported, so they prove
the native path is the one that runs.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medft.training.pipeline import JobInfo, run_training

from conftest import REPO, compose_config

PRESETS = {
    "hai_exaone_qlora": "exaone_dir",
    "pubmedqa_exaone_2.4b_freeze": "exaone_tied_dir",
    "hira_solar_lora": "solar_dir",
    "pubmedqa_llama_lora": "llama31_dir",
}
STEPS = ["train.max_steps=3", "train.eval_steps=0"]
NATIVE = "LlamaForCausalLM (transformers' native implementation)"
_RUNS: dict[str, Path] = {}


def _overrides(preset: str, folder: Path) -> list[str]:
    return [f"experiment={preset}", f"model.path={folder}", "data=sample", *STEPS, "logger=none"]


def _trained(preset: str, request, tmp_path_factory) -> tuple[Path, Path]:
    folder = request.getfixturevalue(PRESETS[preset])
    if preset not in _RUNS:
        run_dir = tmp_path_factory.mktemp(preset.replace(".", "_")) / "run"
        run_training(compose_config(_overrides(preset, folder)), JobInfo(run_dir=run_dir))
        _RUNS[preset] = run_dir
    return _RUNS[preset], folder


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_end_to_end_on_its_standin(preset, request, tmp_path_factory, tmp_path):
    from transformers import AutoModelForCausalLM

    from medft.cli import labels as labels_view
    from medft.evals.runner import evaluate
    from medft.runs.export import export_run
    from medft.runs.loading import load_trained
    from medft.serving.chat_session import ChatSession

    run_dir, folder = _trained(preset, request, tmp_path_factory)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model_code"] == NATIVE
    preflight = json.loads((run_dir / "preflight.json").read_text(encoding="utf-8"))["checks"]
    assert all(not str(v).startswith("FAILED") for v in preflight.values()), preflight
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["global_step"] == 3 and metrics["train_loss"] is not None

    # The labels view shows the first training row's answer as the data has it.
    out = io.StringIO()
    with redirect_stdout(out):
        labels_view.show([*_overrides(preset, folder), "n=1", "plain=true"])
    assert "«" in out.getvalue() and "tokens" in out.getvalue()

    # Export, then reload with plain transformers (no medft, no remote code) and compare.
    cfg = compose_config(
        [f"run={run_dir}", "export.dtype=float32", f"export.output={tmp_path / 'export'}", "export.fidelity_rows=1"]
    )
    exported = export_run(run_dir, cfg.export).folder
    plain = AutoModelForCausalLM.from_pretrained(str(exported), trust_remote_code=False, dtype=torch.float32)
    trained = load_trained(run_dir, device="cpu")
    ids = trained.tokenizer("고혈압 환자는 무엇을 조심해야 하나요?")["input_ids"][:24]
    difference = (_logits(plain, ids) - _logits(trained.model, ids)).abs().max().item()
    # QLoRA: the trained model runs its 4-bit base, the export the dequantized one (medft.runs.merge).
    tolerance = 0.05 if compose_config(_overrides(preset, folder)).method.name.value == "qlora" else 1e-3
    assert difference < tolerance, difference

    # evaluate eval=heldout, then one chat turn, on the trained run.
    from conftest import compose_evaluate

    result, _ = evaluate(
        compose_evaluate([f"run={run_dir}", "eval=heldout", "eval.limit=2", "eval.max_new_tokens=4"]),
        tmp_path / "eval",
        progress=False,
    )
    assert result["metrics"]["n"] >= 1 and result["metrics"]["loss"] > 0
    chat = compose_config(["chat.max_new_tokens=4"]).chat
    reply = ChatSession.from_loaded(trained, chat).reply("머리가 아파요")
    assert isinstance(reply.text, str)


def test_native_exaone_exports_in_lg_layout(request, tmp_path_factory, tmp_path):
    """Freeze trains exactly the top 4 blocks and the tied embedding; the saved model keeps LG's
    key names and a config that loads without remote code."""
    run_dir, folder = _trained("pubmedqa_exaone_2.4b_freeze", request, tmp_path_factory)
    before = load_file(str(folder / "model.safetensors"))
    after = load_file(str(run_dir / "model" / "model.safetensors"))
    assert set(after) == set(before), sorted(set(after) ^ set(before))[:6]
    assert "lm_head.weight" not in after and any(k.startswith("transformer.h.") for k in after)
    changed = {k for k in after if not torch.equal(after[k].float(), before[k].float())}
    blocks = json.loads((folder / "config.json").read_text(encoding="utf-8"))["num_layers"]
    top = {
        k for k in after if k.split(".")[2:3] and k.startswith("transformer.h.") and int(k.split(".")[2]) >= blocks - 4
    }
    assert changed == top | {"transformer.wte.weight"}, sorted(changed ^ (top | {"transformer.wte.weight"}))[:6]
    config = json.loads((run_dir / "model" / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "exaone" and config["architectures"] == ["ExaoneForCausalLM"]
    assert "auto_map" not in config, "the saved folder has no remote-code files to point at"
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(run_dir / "model"), trust_remote_code=False)
    assert type(reloaded).__name__ == "LlamaForCausalLM" and reloaded.config.tie_word_embeddings


def test_design_card_command_trains_a_lg_layout_exaone_with_qlora_on_every_projection(exaone_dir, tmp_path):
    """`python -m medft.train model=exaone data=sample method=qlora model.path=<folder>`: native code,
    adapters on all seven projections of every block."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medft.train",
            "model=exaone",
            "data=sample",
            "method=qlora",
            f"model.path={exaone_dir}",
            "train.max_steps=2",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    preflight = json.loads((run_dir / "preflight.json").read_text(encoding="utf-8"))
    blocks = json.loads((exaone_dir / "config.json").read_text(encoding="utf-8"))["num_layers"]
    assert preflight["stats"]["lora_modules"]["by_role"] == {
        r: blocks for r in ("q", "k", "v", "o", "gate", "up", "down")
    }
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model_code"] == NATIVE and manifest["compute"]["quantized_4bit"]


def test_remote_code_failure_is_one_line_naming_the_native_path(exaone_dir):
    """model.trust_remote_code=true on a checkpoint whose hub code cannot run here."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medft.train",
            "model=exaone",
            "data=sample",
            f"model.path={exaone_dir}",
            "model.trust_remote_code=true",
            "logger=none",
            "train.max_steps=1",
            "hydra.run.dir=/tmp/medft-remote-code",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    last = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1]
    assert "remote code" in last and "model.trust_remote_code=auto" in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
