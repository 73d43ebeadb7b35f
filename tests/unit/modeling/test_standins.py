"""The stand-ins carry the facts of the real checkpoints that the rest of the suite relies on."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from medft.text.templates import load_template

from standins import EXAONE_ASSUMED_IDS, EXAONE_KNOWN_IDS, LLAMA3_NAMED, build_exaone

HANGUL = "고혈압 환자는 염분 섭취를 하루 5 g 미만으로 줄이세요.\n두통이 계속되면 진료를 받으세요."


@pytest.fixture(params=["exaone_dir", "exaone_tied_dir"])
def exaone_any(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["exaone_dir", "llama31_dir", "solar_dir"])
def any_standin(request):
    return request.param, request.getfixturevalue(request.param)


def _tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _keys(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return set(f.keys())


def test_exaone_config_uses_lgs_field_names(exaone_any):
    config = json.loads((exaone_any / "config.json").read_text())
    assert config["architectures"] == ["ExaoneForCausalLM"] and config["model_type"] == "exaone"
    assert {"num_layers", "layer_norm_epsilon", "activation_function", "rope_theta", "head_dim"} <= set(config)
    assert not {"num_hidden_layers", "rms_norm_eps", "hidden_act"} & set(config)
    assert config["rope_scaling"]["rope_type"] == "llama3" and config["rope_scaling"]["factor"] == 8.0
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 361, 0)
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_exaone.ExaoneForCausalLM"


def test_exaone_checkpoint_has_lgs_keys(exaone_dir, exaone_tied_dir):
    untied, tied = _keys(exaone_dir / "model.safetensors"), _keys(exaone_tied_dir / "model.safetensors")
    assert "transformer.wte.weight" in tied and "transformer.ln_f.weight" in tied
    assert {
        "transformer.h.5.attn.attention.out_proj.weight",
        "transformer.h.0.mlp.c_fc_0.weight",
        "transformer.h.0.ln_1.weight",
    } <= tied
    assert not any(k.startswith("model.") for k in tied)
    assert "lm_head.weight" in untied and "lm_head.weight" not in tied
    assert untied - tied == {"lm_head.weight"}


def test_exaone_loads_natively_and_saves_lgs_keys_back(exaone_any, tmp_path):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(exaone_any, trust_remote_code=False, output_loading_info=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert {"o_proj", "gate_proj", "up_proj", "down_proj"} <= names and "out_proj" not in names
    tied = json.loads((exaone_any / "config.json").read_text())["tie_word_embeddings"]
    assert (model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()) is tied
    model.save_pretrained(tmp_path)
    saved = _keys(tmp_path / "model.safetensors")
    assert saved == _keys(exaone_any / "model.safetensors")


def test_exaone_remote_code_raises_when_imported(exaone_dir, tmp_path, monkeypatch):
    from transformers import AutoConfig, dynamic_module_utils

    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # not the user's cache
    monkeypatch.setattr(sys, "path", list(sys.path))

    for name in ("configuration_exaone", "modeling_exaone"):
        spec = importlib.util.spec_from_file_location(name, exaone_dir / f"{name}.py")
        with pytest.raises(ImportError, match="trust_remote_code=False"):
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
    with pytest.raises(ImportError):
        AutoConfig.from_pretrained(exaone_dir, trust_remote_code=True)


def test_exaone_special_token_ids(exaone_dir):
    tok = _tokenizer(exaone_dir)
    for token, token_id in {**EXAONE_KNOWN_IDS, **EXAONE_ASSUMED_IDS}.items():
        assert tok.convert_tokens_to_ids(token) == token_id, token
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("[PAD]", "[BOS]", "[|endofturn|]")
    assert len(tok) == json.loads((exaone_dir / "config.json").read_text())["vocab_size"] >= 362


def test_llama31_special_token_ids(llama31_dir):
    tok = _tokenizer(llama31_dir)
    for token, token_id in LLAMA3_NAMED.items():
        assert tok.convert_tokens_to_ids(token) == token_id, token
    assert tok.convert_tokens_to_ids("<|reserved_special_token_247|>") == 128255
    assert len(tok) == 128256 and tok.pad_token is None
    config = json.loads((llama31_dir / "config.json").read_text())
    assert config["eos_token_id"] == [128001, 128008, 128009] and config["rope_scaling"]["rope_type"] == "llama3"
    assert tok("Hello world", add_special_tokens=False)["input_ids"] == [9906, 1917]  # the real BPE's ids


def test_solar_special_token_ids(solar_dir):
    tok = _tokenizer(solar_dir)
    assert [tok.convert_tokens_to_ids(t) for t in ("<unk>", "<s>", "</s>")] == [0, 1, 2]
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "</s>") and len(tok) == 32000
    assert len(tok("고혈압", add_special_tokens=False)["input_ids"]) == 8  # byte fallback, as the real model


@pytest.mark.parametrize(
    "name, expected", [("exaone_dir", []), ("llama31_dir", ["<|begin_of_text|>"]), ("solar_dir", ["<s>"])]
)
def test_tokenizer_defaults_add_bos_like_the_real_ones(request, name, expected):
    tok = _tokenizer(request.getfixturevalue(name))
    plain = tok(HANGUL, add_special_tokens=False)["input_ids"]
    default = tok(HANGUL)["input_ids"]
    assert default[len(default) - len(plain) :] == plain
    assert tok.convert_ids_to_tokens(default[: len(default) - len(plain)]) == expected


def test_hangul_round_trips_with_offsets(any_standin):
    _, folder = any_standin
    tok = _tokenizer(folder)
    enc = tok(HANGUL, add_special_tokens=False, return_offsets_mapping=True)
    assert tok.decode(enc["input_ids"]) == HANGUL
    assert enc["offset_mapping"][-1][1] == len(HANGUL)


def test_chat_template_is_the_official_one(any_standin):
    name, folder = any_standin
    template = {"exaone_dir": "exaone3_5", "llama31_dir": "llama3_1", "solar_dir": "solar"}[name]
    assert json.loads((folder / "tokenizer_config.json").read_text())["chat_template"] == load_template(template)
    assert _tokenizer(folder).chat_template == load_template(template)


def test_builds_are_byte_identical(tmp_path, exaone_tied_dir):
    again = build_exaone(tmp_path, tied=True)
    files = sorted(p.name for p in exaone_tied_dir.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    assert all((exaone_tied_dir / f).read_bytes() == (again / f).read_bytes() for f in files)
