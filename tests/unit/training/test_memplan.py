"""The memory planner: shapes and parameter counts, estimates against measured peaks, refusals."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch

from conftest import REPO, compose_config

sys.path.insert(0, str(REPO / "benchmarks"))

import memory as bench

from medft.runtime.errors import ConfigError
from medft.training import memory as memplan

GIB = 1 << 30
TOLERANCE = 0.25

# EXAONE 3.5 7.8B Instruct config.json values (research notes, formats.md section 4.1).
EXAONE_78B = {
    "model_type": "exaone",
    "num_layers": 32,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 102400,
    "tie_word_embeddings": False,
}


def _small_arch() -> dict:
    """conf/model/small.yaml's architecture when it exists, else a ~100M Llama of that kind."""
    if (REPO / "conf" / "model" / "small.yaml").is_file():
        tiny = compose_config(["model=small"]).model.tiny
        if tiny is not None:
            return {k: tiny[k] for k in tiny if k != "seed"}
    return {
        "hidden_size": 768,
        "intermediate_size": 2816,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "num_key_value_heads": 4,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
    }


def _llama_config(arch: dict):
    from transformers import LlamaConfig

    from medft.modeling.tiny import build_tokenizer

    return LlamaConfig(vocab_size=len(build_tokenizer()), attn_implementation="sdpa", **arch)


@pytest.fixture(scope="module")
def tiny_cfg():
    return compose_config(["model=tiny"])


def _load_tiny(method: str, gc: bool = False, extra: list[str] | None = None):
    cfg = compose_config(["model=tiny", f"method={method}", *(extra or [])])
    return cfg, bench.load_for_training(cfg, gc)


# --------------------------------------------------------------------------- shapes and counts
def test_module_is_import_light():
    import subprocess

    code = "import sys, medft.training.memory; sys.exit(any(m in sys.modules for m in ('torch', 'transformers')))"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False).returncode == 0


def test_shape_reads_exaone_and_llama_names():
    exaone = memplan.ModelShape.from_config(EXAONE_78B)
    assert (exaone.layers, exaone.hidden, exaone.kv_dim, exaone.q_dim) == (32, 4096, 1024, 4096)
    solar_like = {**EXAONE_78B, "num_layers": None, "num_hidden_layers": 48, "vocab_size": 32000}
    llama = memplan.ModelShape.from_config(solar_like)
    assert llama.layers == 48 and llama.vocab == 32000
    # 6.98B non-embedding parameters, as the EXAONE 3.5 7.8B model card says.
    assert (exaone.params - exaone.embedding_params - exaone.head_params) / 1e9 == pytest.approx(6.98, abs=0.01)
    with pytest.raises(ConfigError):
        memplan.ModelShape.from_config({"hidden_size": 8})


def test_parameter_count_equals_the_real_tiny_model(tiny_cfg, tiny_source):
    from medft.modeling.models import load_model

    model = load_model(tiny_cfg.model, tiny_cfg.method, "cpu", tiny_source)
    real = sum(p.numel() for p in model.parameters())
    assert memplan.shape_from_source(tiny_cfg.model).params == real
    assert memplan.shape_from_source(tiny_cfg.model, tiny_source).params == real  # via config.json


def test_parameter_count_equals_a_small_llama_on_the_meta_device():
    import torch
    from transformers import LlamaForCausalLM

    config = _llama_config(_small_arch())
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    real = sum(p.numel() for p in model.parameters())
    assert 60e6 < real < 200e6
    assert memplan.ModelShape.from_config(config).params == real
    assert memplan.ModelShape.from_config(config.to_dict()).params == real


@pytest.mark.parametrize(
    "method, extra",
    [("lora", []), ("lora", ["method.lora.target=attention", "method.lora.r=8"]), ("freeze", []), ("full", [])],
)
def test_trainable_count_equals_apply_method(tiny_cfg, method, extra):
    from medft.modeling.methods import trainable_summary

    cfg, model = _load_tiny(method, extra=extra)
    est = bench.planner_estimate(cfg, 1, 16, False)
    assert est.trainable_params == trainable_summary(model)["trainable_params"]
    trainable_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    assert est.gradients == trainable_bytes and est.optimizer == 2 * trainable_bytes
    assert est.weights == sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.parametrize("method", ["freeze", "full"])
def test_float32_masters_over_bf16_weights_are_counted(tiny_cfg, method):
    """Trainable base weights are float32 whatever the frozen ones load in: weights, gradients and
    AdamW moments of the trained part count 4 bytes each."""
    cfg, model = _load_tiny(method, extra=["model.dtype=bfloat16"])
    shape = memplan.shape_from_source(cfg.model)
    est = memplan.estimate_for_config(
        cfg,
        shape,
        device="cpu",
        batch_size=1,
        seq_len=16,
        gradient_checkpointing=False,
        weight_dtype_bytes=2,
        compute_dtype_bytes=2,
        loss="chunked",
    )
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert est.weights == sum(p.numel() * p.element_size() for p in model.parameters())
    trainable_bytes = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    assert est.gradients == trainable_bytes and est.optimizer == 2 * trainable_bytes


# --------------------------------------------------------------------------- estimates vs measurements
@pytest.mark.parametrize(
    "method, gc, batch, seq",
    [
        ("lora", False, 2, 128),
        ("lora", True, 2, 128),
        ("full", False, 2, 128),
        ("full", True, 1, 256),
        ("freeze", False, 2, 128),
    ],
)
def test_estimate_within_25_percent_of_measured_peak_on_tiny(method, gc, batch, seq):
    import torch

    torch.manual_seed(0)
    cfg, model = _load_tiny(method, gc)
    measured = bench.measure_tensors(model, bench.make_batch(model.config.vocab_size, batch, seq), gc)
    est = bench.planner_estimate(cfg, batch, seq, gc)
    assert abs(est.peak_allocated / measured.tensors_peak - 1) < TOLERANCE, (est.breakdown(), measured)
    acts = measured.activations + (measured.block if gc else 0)
    assert abs(est.breakdown()["activations"] / acts - 1) < 0.05, (est.breakdown(), acts)
    assert abs(est.logits / measured.logits - 1) < 0.05, (est.logits, measured.logits)
    assert (est.weights, est.gradients) == (measured.weights, measured.gradients)
    assert est.optimizer == pytest.approx(measured.optimizer, rel=1e-3)  # + AdamW's step counters
    assert abs(est.peak_allocated / measured.live_peak - 1) < TOLERANCE, (est.peak_allocated, measured.live_peak)


@pytest.mark.parametrize("method, gc", [("lora", False), ("full", True)])
def test_estimate_within_25_percent_of_measured_peak_on_small(method, gc):
    import torch
    from transformers import LlamaForCausalLM

    from medft.modeling.methods import apply_method

    arch = _small_arch()
    cfg = compose_config(["model=tiny", f"method={method}", *(f"model.tiny.{k}={v}" for k, v in arch.items())])
    torch.manual_seed(0)
    model = LlamaForCausalLM(_llama_config(arch))
    model = bench.prepare_trainable(apply_method(model, cfg.model, cfg.method, gradient_checkpointing=gc), gc)
    batch, seq = 1, 64
    measured = bench.measure_tensors(model, bench.make_batch(model.config.vocab_size, batch, seq), gc)
    est = bench.planner_estimate(cfg, batch, seq, gc)
    assert abs(est.peak_allocated / measured.tensors_peak - 1) < TOLERANCE, (est.breakdown(), measured)


def test_checkpointing_lowers_the_activation_term(tiny_cfg):
    shape = memplan.ModelShape.from_config(EXAONE_78B)
    for method in ("lora", "full"):
        cfg = compose_config(["model=tiny", f"method={method}"])
        off = memplan.estimate(shape, method_cfg=cfg.method, batch_size=4, seq_len=2048, gradient_checkpointing=False)
        on = memplan.estimate(shape, method_cfg=cfg.method, batch_size=4, seq_len=2048, gradient_checkpointing=True)
        assert on.breakdown()["activations"] < off.breakdown()["activations"] / 5
        assert on.peak_allocated < off.peak_allocated
        assert on.weights == off.weights and on.logits == off.logits


def test_kernels_follow_the_run_settings():
    exaone = memplan.ModelShape.from_config(EXAONE_78B)
    llama = memplan.ModelShape.from_config({**EXAONE_78B, "model_type": "llama", "vocab_size": 128256})
    cfg = compose_config(["model=llama", "method=lora", "train.liger=true", "model.attn_implementation=sdpa"])
    est = memplan.estimate_for_config(cfg, llama)
    assert (est.settings["attention"], est.settings["liger"]) == ("sdpa", True)
    # EXAONE 3.5 is remote code that Liger does not patch.
    exaone_cfg = compose_config(["model=exaone", "train.liger=true"])
    assert memplan.estimate_for_config(exaone_cfg, exaone).settings["liger"] is False
    assert memplan.estimate_for_config(cfg, llama, device="cpu").settings["attention"] == "sdpa"
    kw = {"method_cfg": cfg.method, "batch_size": 4, "seq_len": 2048, "gradient_checkpointing": False}
    sdpa = memplan.estimate(llama, **kw).activations
    assert memplan.estimate(llama, liger=True, **kw).activations < sdpa  # one SwiGLU tensor fewer
    assert memplan.estimate(llama, attention="flash_attention_2", **kw).activations < sdpa  # no repeated kv, no bias
    assert memplan.estimate(llama, attention="eager", **kw).activations > 2 * sdpa  # heads x s x s probabilities
    with pytest.raises(ValueError):
        memplan.estimate(llama, attention="flash", **kw)


def test_qlora_linear_weights_are_a_quarter_of_bf16():
    shape = memplan.ModelShape.from_config(EXAONE_78B)
    kw = {"batch_size": 1, "seq_len": 512, "gradient_checkpointing": True}
    lora = memplan.estimate(shape, method_cfg=compose_config(["method=lora"]).method, **kw)
    qlora = memplan.estimate(shape, method_cfg=compose_config(["method=qlora"]).method, **kw)
    adapters = 4 * qlora.trainable_params
    assert qlora.trainable_params == lora.trainable_params
    not_linear = shape.params - shape.layers * shape.block_linear_params
    linear_4bit = qlora.weights - adapters - 4 * not_linear  # PEFT upcasts the rest to float32
    linear_bf16 = 2 * shape.layers * shape.block_linear_params
    assert 0.25 < linear_4bit / linear_bf16 < 0.27
    assert qlora.weights < 0.5 * lora.weights  # embeddings and lm_head stay float32


def test_qlora_weights_match_a_real_4bit_tiny_model():
    pytest.importorskip("bitsandbytes")
    cfg, model = _load_tiny("qlora")
    real = 0
    for module in model.modules():
        for p in module.parameters(recurse=False):
            real += p.numel() * p.element_size()
            state = getattr(p, "quant_state", None)
            if state is not None:
                real += state.absmax.numel() * state.absmax.element_size()
                nested = getattr(state, "state2", None)
                if nested is not None:
                    real += nested.absmax.numel() * nested.absmax.element_size() + 4  # + offset
    est = bench.planner_estimate(cfg, 1, 16, False)
    assert est.weights == pytest.approx(real, rel=0.02)


def test_exaone_78b_bf16_lora_weights_are_about_15_6_gb():
    shape = memplan.ModelShape.from_config(EXAONE_78B)
    est = memplan.estimate(
        shape,
        method_cfg=compose_config(["method=lora"]).method,
        batch_size=1,
        seq_len=1024,
        gradient_checkpointing=True,
        weight_dtype_bytes=2,
        lora_targets=["q_proj", "k_proj", "v_proj", "out_proj", "c_fc_0", "c_fc_1", "c_proj"],
    )
    assert est.weights / 1e9 == pytest.approx(15.6, rel=0.05)
    assert "GiB" in est.describe() and "\n" not in est.describe()


# --------------------------------------------------------------------------- check_fits
def _exaone_source(tmp_path):
    from medft.modeling.models import WeightsSource

    # model_type llama: the llamafied EXAONE has the same shape and needs no remote code.
    (tmp_path / "config.json").write_text(json.dumps({**EXAONE_78B, "model_type": "llama", "num_hidden_layers": 32}))
    return WeightsSource(str(tmp_path), None, False, True)


def test_check_fits_refuses_in_one_line_with_a_suggestion_that_fits(tmp_path):
    source = _exaone_source(tmp_path)
    overrides = [
        "model=exaone",
        "method=lora",
        "train.per_device_batch_size=8",
        "train.max_length=2048",
        "train.gradient_accumulation_steps=2",
    ]
    free = int(23.6 * GIB)
    with pytest.raises(ConfigError) as err:
        memplan.check_fits(compose_config(overrides), source, free)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith("model=exaone method=lora needs ~") and "23.6 GiB free" in line
    assert "train.per_device_batch_size=8 train.max_length=2048" in line
    first = re.search(r"try: (.+?) \(~([\d.]+) GiB\)", line)
    assert first, line
    suggestion = first.group(1).split()
    assert all(re.fullmatch(r"[\w.]+=[\w.]+", s) for s in suggestion), suggestion
    batch = dict(s.split("=") for s in suggestion)
    if "train.per_device_batch_size" in batch:  # the global batch is kept
        assert int(batch["train.per_device_batch_size"]) * int(batch["train.gradient_accumulation_steps"]) == 16
    # Re-estimated with the suggestion applied, the run fits.
    est = memplan.check_fits(compose_config(overrides + suggestion), source, free)
    assert est.total <= free
    assert f"{est.total / GIB:.1f}" == first.group(2)


def test_check_fits_passes_when_memory_is_ample(tmp_path):
    source = _exaone_source(tmp_path)
    cfg = compose_config(["model=exaone", "method=qlora", "train.per_device_batch_size=2", "train.max_length=1024"])
    est = memplan.check_fits(cfg, source, 80 * GIB)
    assert 5 * GIB < est.total < 20 * GIB
    assert est.settings["gradient_checkpointing"] is True  # CUDA default


def test_suggestions_are_ordered_and_all_fit():
    shape = memplan.ModelShape.from_config(EXAONE_78B)
    method = compose_config(["method=lora"]).method
    kw = {"method_cfg": method, "batch_size": 16, "seq_len": 2048, "gradient_checkpointing": False}
    base = memplan.estimate(shape, **kw)
    available = int(base.total * 0.5)
    options = memplan.suggest(shape, available_bytes=available, limit=3, **kw)
    assert options and all(o.estimate.total <= available for o in options)
    assert options[0].overrides.startswith("train.gradient_checkpointing=true")
    assert memplan.suggest(shape, available_bytes=1 * GIB, **kw) == []  # nothing makes 7.8B fit in 1 GiB


# --------------------------------------------------------------------------- CUDA
@pytest.mark.gpu
@pytest.mark.parametrize(
    "model_name, method, gc", [("tiny", "lora", False), ("tiny", "full", True), ("small", "lora", True)]
)
def test_estimate_matches_cuda_max_memory_allocated(model_name, method, gc):
    import torch

    from medft.modeling.methods import apply_method
    from medft.modeling.models import load_model, resolve_source

    cfg = compose_config([f"model={model_name}", f"method={method}"])
    model = load_model(cfg.model, cfg.method, "cuda", resolve_source(cfg.model))
    model = bench.prepare_trainable(apply_method(model, cfg.model, cfg.method, gradient_checkpointing=gc), gc)
    batch, seq = 4, 512
    data = {k: v.cuda() for k, v in bench.make_batch(model.config.vocab_size, batch, seq).items()}
    optimizer = bench.make_optimizer(model)
    with torch.autocast("cuda", dtype=torch.bfloat16):  # train.bf16 defaults to on with CUDA
        bench.train_step(model, optimizer, data)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        bench.train_step(model, optimizer, data)
    peak = torch.cuda.max_memory_allocated()
    # The step above runs outside SFTTrainer, so Liger's kernels (applied by the trainer) are off.
    est = memplan.estimate_for_config(
        cfg, memplan.shape_from_source(cfg.model), batch_size=batch, seq_len=seq, gradient_checkpointing=gc, liger=False
    )
    assert abs(est.peak_allocated / peak - 1) < TOLERANCE, (est.breakdown(), peak)


def test_planner_follows_the_loss_head_the_run_uses():
    """TRL's chunked head on CUDA by default; train.fused_loss=false plans the full logits."""
    cfg = compose_config(["model=tiny"])
    shape = memplan.shape_from_source(cfg.model)
    assert memplan.estimate_for_config(cfg, shape, device="cuda").settings["loss"] == "chunked"
    assert memplan.estimate_for_config(cfg, shape, device="cpu").settings["loss"] == "full"
    plain = compose_config(["model=tiny", "train.fused_loss=false"])
    assert memplan.estimate_for_config(plain, shape, device="cuda").settings["loss"] == "full"
