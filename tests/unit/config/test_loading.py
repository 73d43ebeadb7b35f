"""A saved config reads back through the schema: enums as enums, new keys at their defaults, extra keys kept."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from medft.config import DType, LoggerBackend, MethodName, from_container, load_config, to_container, validate
from medft.runtime.errors import ConfigError

from conftest import compose_config


def _saved(tmp_path, overrides=(), edit=None):
    data = to_container(compose_config(list(overrides)))
    if edit:
        edit(data)
    path = tmp_path / "config.resolved.yaml"
    OmegaConf.save(OmegaConf.create(data), path)
    return path


def test_a_saved_config_reads_back_typed(tmp_path):
    cfg = load_config(_saved(tmp_path, ["method=freeze", "method.trainable_layers=2"]))
    assert cfg.method.name is MethodName.freeze
    assert cfg.model.dtype is DType.float32
    assert cfg.logger.backend is LoggerBackend.wandb
    assert f"{cfg.method.name}" == "freeze" and str(cfg.model.dtype) == "float32"
    assert to_container(cfg) == to_container(compose_config(["method=freeze", "method.trainable_layers=2"]))
    validate(cfg)


def test_keys_added_to_the_schema_since_take_their_defaults(tmp_path):
    cfg = load_config(_saved(tmp_path, edit=lambda d: d["train"].pop("liger") and None))
    assert "liger" in cfg.train and cfg.train.liger is None


def test_keys_the_schema_does_not_know_are_kept(tmp_path):
    def edit(data):
        data["extra"] = 1
        data["model"]["old_setting"] = "x"
        data["data"]["sources"]["aihub"]["legacy"] = [1, 2]

    cfg = load_config(_saved(tmp_path, edit=edit))
    assert cfg.extra == 1 and cfg.model.old_setting == "x" and list(cfg.data.sources.aihub.legacy) == [1, 2]
    assert cfg.method.name is MethodName.lora


def test_a_value_outside_the_schema_names_the_file_and_key(tmp_path):
    path = _saved(tmp_path, edit=lambda d: d["method"].update(name="dpo"))
    with pytest.raises(ConfigError, match=r"config.resolved.yaml: method.name does not fit the schema"):
        load_config(path)


def test_a_missing_file_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nothing.yaml")


def test_from_container_fills_an_optional_section():
    cfg = from_container({"model": {"name": "m", "tiny": {"hidden_size": 64}}})
    assert cfg.model.tiny.hidden_size == 64 and cfg.model.tiny.num_hidden_layers == 4
