"""Every config file composes and validates; bad overrides fail in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from medft.cli import check_overrides, group_options
from medft.config import CONF_DIR, validate
from medft.runtime.errors import ConfigError

from conftest import REPO, compose_config

# conf/accelerate/ holds `accelerate launch` files and conf/hydra/ Hydra's own groups;
# both are checked in their own tests.
GROUP_FILES = sorted(
    p
    for p in CONF_DIR.rglob("*.yaml")
    if p.parent != CONF_DIR and p.relative_to(CONF_DIR).parts[0] not in ("accelerate", "hydra")
)


def test_tree_has_every_required_option():
    assert set(group_options("model")) >= {"exaone", "exaone_2.4b", "llama", "solar", "tiny"}
    assert set(group_options("data")) >= {"aihub", "pubmedqa_ko", "hira", "sample"}
    assert set(group_options("method")) >= {"qlora", "lora", "freeze", "full"}
    assert set(group_options("logger")) >= {"wandb", "none"}
    assert set(group_options("experiment")) >= {
        "hai_exaone_qlora",
        "pubmedqa_exaone_2.4b_freeze",
        "pubmedqa_llama_lora",
        "hira_solar_lora",
    }


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_every_config_file_composes_and_validates(path):
    group, option = path.parent.relative_to(CONF_DIR).as_posix(), path.stem
    cfg = compose_config([f"{group}={option}"])
    validate(cfg)
    # The whole config resolves (interpolations, enums) and round-trips to YAML.
    assert OmegaConf.to_yaml(cfg, resolve=True)


def test_default_composition_is_the_offline_demo():
    cfg = compose_config()
    assert (cfg.model.name, cfg.data.name, cfg.method.name.value) == ("tiny", "sample", "lora")
    assert cfg.model.tiny is not None and cfg.model.hub_id is None


@pytest.mark.parametrize(
    "model, hub_id",
    [
        ("exaone", "LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct"),
        ("exaone_2.4b", "LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct"),
        ("llama", "meta-llama/Llama-3.1-8B-Instruct"),
        ("solar", "upstage/SOLAR-10.7B-Instruct-v1.0"),
    ],
)
def test_real_model_specs(model, hub_id):
    """Every spec pins a revision and leaves the code path to auto (native where transformers has it);
    module names come from the loaded model, not from the spec."""
    m = compose_config([f"model={model}"]).model
    assert m.hub_id == hub_id and m.trust_remote_code == "auto"
    assert len(m.revision) == 40 and int(m.revision, 16) >= 0, "revision must be a pinned commit"
    assert "lora_targets" not in m


def test_trust_remote_code_takes_only_auto_true_false():
    cfg = compose_config(["model.trust_remote_code=maybe"])
    with pytest.raises(ConfigError, match=r"^model.trust_remote_code=maybe must be one of auto, true, false$"):
        validate(cfg)
    for value in ("true", "false", "auto"):
        validate(compose_config([f"model.trust_remote_code={value}"]))


@pytest.mark.parametrize(
    "name, checks",
    [
        (
            "hai_exaone_qlora",
            {
                "model.name": "exaone",
                "data.name": "aihub",
                "method.name": "qlora",
                "method.lora.target": "attention",
                "method.quantization.quant_type": "nf4",
                "method.quantization.double_quant": True,
                "train.per_device_batch_size": 2,
                "train.gradient_accumulation_steps": 4,
                "train.epochs": 3,
            },
        ),
        (
            "pubmedqa_exaone_2.4b_freeze",
            {
                "model.name": "exaone_2.4b",
                "data.name": "pubmedqa_ko",
                "method.name": "freeze",
                "method.trainable_layers": 4,
                "method.train_lm_head": True,
                "train.learning_rate": 1e-5,
                "train.warmup_ratio": 0.1,
                "train.per_device_batch_size": 1,
                "train.bf16": True,
                "train.max_grad_norm": 1.0,
                "train.epochs": 3,
                "train.optim": "adamw_torch",
                "train.lr_scheduler": "linear",
            },
        ),
        (
            "pubmedqa_llama_lora",
            {
                "model.name": "llama",
                "data.name": "pubmedqa_ko",
                "method.name": "qlora",
                "method.lora.r": 16,
                "method.lora.alpha": 16,
                "method.lora.dropout": 0.0,
                "method.lora.target": "all",
                "train.learning_rate": 2e-4,
                "train.per_device_batch_size": 3,
                "train.gradient_accumulation_steps": 4,
                "train.warmup_steps": 5,
                "train.max_steps": 60,
                "train.eval_steps": 10,
                "train.max_length": 512,
            },
        ),
        (
            "hira_solar_lora",
            {
                "model.name": "solar",
                "data.name": "hira",
                "method.name": "lora",
                "method.lora.r": 16,
                "method.lora.alpha": 32,
                "method.lora.dropout": 0.05,
                "train.per_device_batch_size": 2,
                "train.gradient_accumulation_steps": 4,
                "train.learning_rate": 2e-4,
                "train.epochs": 10,
                "train.max_length": 512,
                "train.load_best_model_at_end": True,
            },
        ),
    ],
)
def test_experiment_presets_pin_their_recipe(name, checks):
    cfg = compose_config([f"experiment={name}"])
    assert cfg.name == name
    for key, expected in checks.items():
        value = OmegaConf.select(cfg, key)
        value = getattr(value, "value", value)
        assert value == expected, f"{name}: {key}={value!r}, expected {expected!r}"


def test_schema_rejects_unknown_key_and_wrong_type():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose_config(["train.learning_rat=1e-4"])
    with pytest.raises(ConfigCompositionException):
        compose_config(["train.epochs=three"])
    with pytest.raises(ConfigCompositionException):
        compose_config(["method=lora", "method.lora.target=everything"])


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["model=exaone3"], "model=exaone3 is not a model config; did you mean model=exaone? choose one of: exaone,"),
        (["method=lora,qlora,dpo"], "method=dpo is not a method config"),
        (["data=[aihub,pubmed]"], "data=pubmed is not a data config"),
        (
            ["train.learning_rat=1e-4"],
            "train.learning_rat is not a setting of train; did you mean train.learning_rate?",
        ),
        (["method.lora.rank=8"], "method.lora.rank is not a setting of method.lora; valid keys: r, alpha,"),
        (["train.epochs=three"], "train.epochs=three: Value 'three' of type 'str' could not be converted to Float"),
        (["method.lora.target=everything"], "expected one of [all, attention, mlp]"),
        (["-m", "train.learning_rate=1e-4,abc"], "train.learning_rate=abc"),
        (["data.sources.aihub.pairing=best"], "expected one of [first, random, all]"),
    ],
)
def test_override_check_names_key_and_fix(argv, fragment):
    with pytest.raises(ConfigError) as err:
        check_overrides(argv)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_override_check_accepts_valid_overrides():
    check_overrides(
        [
            "model=exaone_2.4b",
            "method=lora,freeze",
            "data=[aihub,hira]",
            "method.lora.r=8,16",
            "train.learning_rate=1e-4",
            "model.path=null",
            "method.quantization.compute_dtype=float16",
            "data.sources.aihub.path=/x",
            "+extra=1",
            "hydra.run.dir=/tmp/x",
            "-m",
            "experiment=null",
        ]
    )


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["method=freeze", "method.trainable_layers=0"], "method.trainable_layers=0"),
        (["method=lora", "method.trainable_layers=2"], "method.trainable_layers only applies to method=freeze"),
        (["train.load_best_model_at_end=true", "train.save_strategy=no"], "train.load_best_model_at_end"),
        (["data.validation_ratio=0.7"], "data.validation_ratio=0.7"),
    ],
)
def test_cross_field_rules(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(overrides))
    assert fragment in str(err.value)


def test_qlora_without_bitsandbytes_is_one_line(monkeypatch):
    from medft.config import rules

    monkeypatch.setattr(rules, "bitsandbytes_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^method=qlora needs 4-bit bitsandbytes.*use method=lora$"):
        validate(compose_config(["method=qlora"]))


def _run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_cfg_job_prints_the_real_recipe():
    out = _run_cli("-m", "medft.train", "model=exaone", "data=aihub", "method=qlora", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    cfg = OmegaConf.create(out.stdout)
    assert cfg.model.hub_id == "LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct"
    assert cfg.method.quantization.quant_type == "nf4"


def test_help_and_cfg_import_no_heavy_modules():
    """--help must answer at once: neither torch nor transformers may be imported for it."""
    for flag in ("--help", "--cfg"):
        extra = ["job"] if flag == "--cfg" else []
        out = _run_cli("-X", "importtime", "-m", "medft.train", flag, *extra)
        assert out.returncode == 0, out.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
        heavy = {m for m in imported if m.split(".")[0] in {"torch", "transformers", "trl", "peft", "datasets"}}
        assert not heavy, f"{flag} imported {sorted(heavy)[:5]}"


def test_unknown_option_on_command_line_is_one_line_without_traceback():
    out = _run_cli("-m", "medft.train", "model=gpt5")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("medft: error: model=gpt5 is not a model config")
    assert "Traceback" not in out.stderr
