"""Each method trains exactly the parameters it should, and the loss falls."""

from __future__ import annotations

import re

import pytest
import torch

from medft import methods
from medft.config import MethodName
from medft.errors import ConfigError
from medft.pipeline import JobInfo, run_training

from conftest import compose_config

FAST = ["logger=none", "train.max_steps=16", "train.logging_steps=4", "train.save_strategy=no",
        "train.per_device_batch_size=8"]  # fmt: skip

METHODS = {
    "lora": ["method=lora", "train.learning_rate=2e-3"],
    "qlora": ["method=qlora", "train.learning_rate=2e-3"],
    "freeze": ["method=freeze", "method.trainable_layers=2", "train.learning_rate=1e-3"],
    "full": ["method=full", "train.learning_rate=1e-3"],
}


def _expected_trainable(name: str, method: str) -> bool:
    if method in ("lora", "qlora"):
        return "lora_" in name
    if method == "freeze":
        return bool(re.match(r"model\.layers\.[23]\.", name)) or name == "lm_head.weight"
    return True


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_only_its_parameters_and_loss_falls(method, tmp_path, monkeypatch):
    captured = {}
    real_apply = methods.apply_method

    def apply_and_snapshot(model, *args, **kwargs):
        model = real_apply(model, *args, **kwargs)
        captured["model"] = model
        captured["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return model

    monkeypatch.setattr(methods, "apply_method", apply_and_snapshot)
    cfg = compose_config([*METHODS[method], *FAST])
    metrics = run_training(cfg, JobInfo(run_dir=tmp_path / "run"))

    assert metrics["eval_loss"] < metrics["eval_loss_initial"], metrics
    assert metrics["train_loss"] < metrics["train_loss_first"], metrics
    after = dict(captured["model"].named_parameters())
    before = captured["before"]
    changed = {n for n in before if not torch.equal(before[n], after[n].detach().to(before[n].dtype))}
    requires_grad = {n for n, p in after.items() if p.requires_grad}
    intended = {n for n in after if _expected_trainable(n, method)}
    assert intended, "the method selected no parameters"
    assert requires_grad == intended
    assert changed == intended, f"unexpected: {sorted(changed ^ intended)[:6]}"
    if method == "qlora":
        assert any(type(m).__name__ == "Linear4bit" for m in captured["model"].modules())
    artifact = tmp_path / "run" / metrics["artifact"]
    assert artifact.name == ("adapter" if method in ("lora", "qlora") else "model")
    assert list(artifact.glob("*.safetensors")), "weights must be saved as safetensors"
    assert not list(artifact.glob("*.bin"))


def _tiny_gpt2(layers: int = 5):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=layers, n_embd=32, n_head=2, vocab_size=64, n_positions=64, tie_word_embeddings=False)
    return GPT2LMHeadModel(config)


def test_freeze_finds_transformer_h_blocks_like_exaone():
    """EXAONE 3.5 keeps its blocks at transformer.h.N (GPT-2 layout); freeze must find them structurally."""
    model = _tiny_gpt2(5)
    cfg = compose_config(["method=freeze", "method.trainable_layers=2"])
    prefix, layers = methods.find_decoder_layers(model)
    assert prefix == "transformer.h" and len(layers) == 5
    methods.apply_method(model, cfg.model, cfg.method)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if re.match(r"transformer\.h\.[34]\.", n)} | {
        "lm_head.weight"
    }


def test_freeze_with_more_layers_than_the_model_has_is_one_line():
    model = _tiny_gpt2(3)
    cfg = compose_config(["method=freeze", "method.trainable_layers=8"])
    with pytest.raises(ConfigError, match=r"^method.trainable_layers=8 but model=tiny has 3 decoder blocks .*1\.\.3$"):
        methods.apply_method(model, cfg.model, cfg.method)


def test_lora_targets_that_match_nothing_fail_naming_the_real_layers(tiny_source):
    from medft.models import load_model

    cfg = compose_config(["method=lora", "method.lora.target_modules=[q_proj,out_proj,c_fc_0]"])
    model = load_model(cfg.model, cfg.method, "cpu", tiny_source)
    with pytest.raises(ConfigError) as err:
        methods.apply_method(model, cfg.model, cfg.method)
    message = str(err.value)
    assert "out_proj, c_fc_0 match no linear layer of model=tiny" in message and "o_proj" in message


@pytest.mark.parametrize("target, expected", [("attention", {"q_proj", "k_proj", "v_proj", "o_proj"}),
                                              ("mlp", {"gate_proj", "up_proj", "down_proj"})])
def test_lora_target_groups_use_the_model_specs_names(target, expected):
    cfg = compose_config(["method=lora", f"method.lora.target={target}"])
    assert set(methods.resolve_lora_targets(cfg.model, cfg.method.lora)) == expected
    exaone = compose_config(["model=exaone", "method=lora", f"method.lora.target={target}"])
    names = set(methods.resolve_lora_targets(exaone.model, exaone.method.lora))
    assert names == ({"q_proj", "k_proj", "v_proj", "out_proj"} if target == "attention" else {"c_fc_0", "c_fc_1", "c_proj"})
    assert MethodName(cfg.method.name) is MethodName.lora


def test_qlora_gradients_survive_an_evaluation_on_cpu(tiny_source):
    """An eval pass (step-0 validation) must not change how later training steps backpropagate
    through the frozen 4-bit layers: adapter gradients equal those of a model never evaluated."""
    from medft.models import load_model

    cfg = compose_config(["method=qlora"])
    ids = torch.tensor([[5, 60, 70, 80, 90, 100, 110, 120]])

    def adapter_grads(evaluate_first: bool):
        torch.manual_seed(0)
        model = methods.apply_method(load_model(cfg.model, cfg.method, "cpu", tiny_source), cfg.model, cfg.method)
        for name, param in model.named_parameters():  # non-zero B so gradients reach every A
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)
        if evaluate_first:
            model.eval()
            with torch.no_grad():
                model(input_ids=ids)
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    fresh, evaluated = adapter_grads(False), adapter_grads(True)
    first_layer = [n for n in fresh if ".layers.0." in n and "lora_A" in n]
    assert first_layer
    for name in fresh:
        assert torch.allclose(fresh[name], evaluated[name], atol=1e-6), name
