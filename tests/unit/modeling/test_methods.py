"""Each method trains exactly the parameters it should, and the loss falls."""

from __future__ import annotations

import re

import pytest
import torch

from medft.modeling import methods
from medft.runtime.errors import ConfigError
from medft.training.pipeline import JobInfo, run_training

from conftest import compose_config

FAST = [
    "logger=none",
    "train.max_steps=16",
    "train.logging_steps=4",
    "train.save_strategy=no",
    "train.per_device_batch_size=8",
]

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
    from medft.modeling.models import load_model

    cfg = compose_config(["method=lora", "method.lora.target_modules=[q_proj,out_proj,c_fc_0]"])
    model = load_model(cfg.model, cfg.method, "cpu", tiny_source)
    with pytest.raises(ConfigError) as err:
        methods.apply_method(model, cfg.model, cfg.method)
    message = str(err.value)
    assert "out_proj, c_fc_0 match no linear layer of model=tiny" in message and "o_proj" in message


class _LgAttention(torch.nn.Module):
    def __init__(self, h):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (torch.nn.Linear(h, h, bias=False) for _ in range(4))


class _LgBlock(torch.nn.Module):
    """The module tree of LG's EXAONE 3.5 remote code: attn.attention.*, mlp.c_fc_0/c_fc_1/c_proj."""

    def __init__(self, h):
        super().__init__()
        self.ln_1, self.ln_2 = torch.nn.LayerNorm(h), torch.nn.LayerNorm(h)
        self.attn = torch.nn.Module()
        self.attn.attention = _LgAttention(h)
        self.mlp = torch.nn.Module()
        self.mlp.c_fc_0, self.mlp.c_fc_1 = torch.nn.Linear(h, 2 * h, bias=False), torch.nn.Linear(h, 2 * h, bias=False)
        self.mlp.c_proj = torch.nn.Linear(2 * h, h, bias=False)


class ExaoneForCausalLM(torch.nn.Module):
    def __init__(self, layers=3, h=8, tied=True):
        super().__init__()
        self.config = type("Config", (), {"num_layers": layers})()
        self.transformer = torch.nn.Module()
        self.transformer.wte = torch.nn.Embedding(32, h)
        self.transformer.h = torch.nn.ModuleList(_LgBlock(h) for _ in range(layers))
        self.lm_head = torch.nn.Linear(h, 32, bias=False)
        if tied:
            self.lm_head.weight = self.transformer.wte.weight

    def get_input_embeddings(self):
        return self.transformer.wte

    def get_output_embeddings(self):
        return self.lm_head


def test_families_read_lg_remote_code_names_from_the_loaded_model():
    from medft.modeling import families

    family = families.describe(ExaoneForCausalLM())
    assert family.blocks_path == "transformer.h" and family.num_blocks == 3
    assert family.role_names == {
        "q": "q_proj",
        "k": "k_proj",
        "v": "v_proj",
        "o": "out_proj",
        "gate": "c_fc_0",
        "up": "c_fc_1",
        "down": "c_proj",
    }
    assert family.tied_lm_head and not family.native
    assert families.lora_target_names(ExaoneForCausalLM(), "mlp", None, "x") == ["c_fc_0", "c_fc_1", "c_proj"]


@pytest.mark.parametrize(
    "target, expected",
    [
        ("attention", ["q_proj", "k_proj", "v_proj", "o_proj"]),
        ("mlp", ["gate_proj", "up_proj", "down_proj"]),
        ("all", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    ],
)
def test_lora_target_roles_resolve_on_the_native_model(tiny_source, target, expected):
    from medft.modeling import families
    from medft.modeling.models import load_model

    cfg = compose_config(["method=lora", f"method.lora.target={target}"])
    model = load_model(cfg.model, cfg.method, "cpu", tiny_source)
    assert methods.resolve_lora_targets(model, cfg.model, cfg.method.lora) == expected
    family = families.describe(model)
    assert family.native and family.blocks_path == "model.layers" and not family.tied_lm_head


def test_a_role_the_model_lacks_fails_naming_its_real_layers():
    from medft.modeling import families

    model = ExaoneForCausalLM()
    for block in model.transformer.h:
        del block.mlp.c_fc_1
    with pytest.raises(ConfigError, match=r"^method.lora roles up match no linear layer of model=x .*c_fc_0"):
        families.lora_target_names(model, "all", None, "x")


def test_trainable_base_weights_are_float32_over_bfloat16_frozen_ones():
    model = ExaoneForCausalLM(tied=False).to(torch.bfloat16)
    cfg = compose_config(["method=freeze", "method.trainable_layers=1"])
    methods.apply_method(model, cfg.model, cfg.method)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert {n for n, d in dtypes.items() if d == torch.float32} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
    assert dtypes["transformer.h.0.mlp.c_proj.weight"] == torch.bfloat16
    assert dtypes["transformer.h.2.mlp.c_proj.weight"] == torch.float32 and dtypes["lm_head.weight"] == torch.float32


def test_qlora_gradients_survive_an_evaluation_on_cpu(tiny_source):
    """An eval pass (step-0 validation) must not change how later training steps backpropagate
    through the frozen 4-bit layers: adapter gradients equal those of a model never evaluated."""
    from medft.modeling.models import load_model

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
