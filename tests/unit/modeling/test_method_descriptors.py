"""One descriptor per training method, and what each one says."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from medft.config import MethodName
from medft.modeling import methods
from medft.runtime.errors import ConfigError

from conftest import compose_config


def test_every_method_has_a_descriptor():
    assert set(methods.METHODS) == set(MethodName)
    for name, descriptor in methods.METHODS.items():
        assert descriptor.name is name
        assert methods.descriptor(name) is descriptor
        assert methods.descriptor(name.value) is descriptor


def test_descriptors_say_adapter_quantization_and_folder():
    facts = {name.value: (d.adapter, d.quantized, d.artifact) for name, d in methods.METHODS.items()}
    assert facts == {
        "lora": (True, False, "adapter"),
        "qlora": (True, True, "adapter"),
        "freeze": (False, False, "model"),
        "full": (False, False, "model"),
    }
    assert methods.artifact_folders() == ("adapter", "model")
    assert [d.trains_base_weights for d in methods.METHODS.values()] == [False, False, True, True]


def test_an_unknown_method_is_one_line():
    with pytest.raises(ConfigError, match=r"^method=dora is not a method; choose one of lora, qlora, freeze, full$"):
        methods.descriptor("dora")


@pytest.mark.parametrize("method", ["lora", "freeze", "full"])
def test_shipped_method_configs_pass_their_validation(method):
    cfg = compose_config([f"method={method}"])
    methods.descriptor(cfg.method.name).validate(cfg.method, cfg.model)


def test_validation_names_the_key_and_the_fix():
    cfg = compose_config(["method=freeze", "method.trainable_layers=8"])
    freeze = methods.descriptor("freeze")
    freeze.validate(cfg.method, cfg.model)
    too_many = r"^method.trainable_layers=8 but model=tiny has 3 decoder blocks; choose 1..3$"
    with pytest.raises(ConfigError, match=too_many):
        freeze.validate(cfg.method, cfg.model, layers=3)
    with pytest.raises(ConfigError, match="must be a positive number"):
        freeze.validate(OmegaConf.create({"name": "freeze", "trainable_layers": 0}))
    with pytest.raises(ConfigError, match="only applies to method=freeze, not method=full"):
        methods.descriptor("full").validate(OmegaConf.create({"name": "full", "trainable_layers": 2}))
    with pytest.raises(ConfigError, match="method=lora needs method.lora settings"):
        methods.descriptor("lora").validate(OmegaConf.create({"name": "lora", "lora": None}))


def test_every_problem_is_reported_at_once():
    lora = methods.descriptor("lora")
    cfg = OmegaConf.create({"name": "lora", "lora": None, "quantization": {}, "trainable_layers": 2})
    assert len(lora.problems(cfg)) == 3
    with pytest.raises(ConfigError, match=r"^3 problems in the config:\n  - method=lora needs method.lora"):
        lora.validate(cfg)
