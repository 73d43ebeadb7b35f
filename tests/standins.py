"""Real-architecture stand-ins: tiny random models laid out on disk like the hub downloads.

Each builder writes a complete model folder (config.json with the hub's own field names,
safetensors weights under the checkpoint's own key names, tokenizer files with the official
chat template in tokenizer_config.json, generation_config.json), so the tests load them
through exactly the path a downloaded EXAONE 3.5, Llama 3.1 or SOLAR takes. Only the sizes
shrink (hidden 64, 6 decoder blocks); weights are random but seeded, so every build is
byte-identical.

What is real and what is assumed:
- Llama 3.1: the real tokenizer (the tiktoken BPE of the ``llama-models`` wheel, converted as
  the hub's tokenizer.json, hub names and ids for the 256 special tokens).
- SOLAR: the real 32,000-piece SentencePiece model SOLAR was built from (the Mistral-7B one,
  in the ``mistral-common`` wheel); tokenizer_config.json as Mistral-7B-v0.1's (``legacy``,
  ``add_bos_token``), SOLAR's pad token and chat template.
- EXAONE 3.5: config.json and weight keys as LG's; the 102,400-token vocabulary is not
  available, so the tokenizer is character-level with byte fallback and carries EXAONE's special
  tokens at EXAONE's ids where known ([PAD]=0, [BOS]=1, [|endofturn|]=361). Assumed ids:
  [EOS]=2, [UNK]=3, [|system|]=4, [|user|]=5, [|assistant|]=6 (``EXAONE_ASSUMED_IDS``).
  LG's remote code is replaced by files that raise ImportError when imported, so an
  accidental ``trust_remote_code`` path fails loudly instead of running something else.
"""

from __future__ import annotations

import json
from pathlib import Path

HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 64, 128, 6, 4, 2, 16
SEED = 20241209
TEMPLATES = Path(__file__).resolve().parent.parent / "medft" / "text" / "templates"

EXAONE_KNOWN_IDS = {"[PAD]": 0, "[BOS]": 1, "[|endofturn|]": 361}
EXAONE_ASSUMED_IDS = {"[EOS]": 2, "[UNK]": 3, "[|system|]": 4, "[|user|]": 5, "[|assistant|]": 6}

LLAMA3_NAMED = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|reserved_special_token_0|>": 128002,
    "<|reserved_special_token_1|>": 128003,
    "<|finetune_right_pad_id|>": 128004,
    "<|reserved_special_token_2|>": 128005,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eom_id|>": 128008,
    "<|eot_id|>": 128009,
    "<|python_tag|>": 128010,
}

_RAISING_REMOTE_CODE = '''"""Stand-in for LG's remote code: EXAONE 3.5 must load natively (trust_remote_code=False)."""

raise ImportError("{name}: LG's remote code is not part of this stand-in; load it with trust_remote_code=False")
'''


def _template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --- weights -------------------------------------------------------------------------------


def _llama_weights(vocab: int, tied: bool, dtype: str) -> dict:
    """Seeded random Llama-named tensors (std 0.02 as initializer_range, norms at one)."""
    import torch

    gen = torch.Generator().manual_seed(SEED)

    def rand(*shape):
        return (torch.randn(*shape, generator=gen) * 0.02).to(getattr(torch, dtype))

    ones = torch.ones(HIDDEN, dtype=getattr(torch, dtype))
    weights = {"model.embed_tokens.weight": rand(vocab, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        weights[p + "input_layernorm.weight"] = ones.clone()
        weights[p + "self_attn.q_proj.weight"] = rand(HEADS * HEAD_DIM, HIDDEN)
        weights[p + "self_attn.k_proj.weight"] = rand(KV_HEADS * HEAD_DIM, HIDDEN)
        weights[p + "self_attn.v_proj.weight"] = rand(KV_HEADS * HEAD_DIM, HIDDEN)
        weights[p + "self_attn.o_proj.weight"] = rand(HIDDEN, HEADS * HEAD_DIM)
        weights[p + "post_attention_layernorm.weight"] = ones.clone()
        weights[p + "mlp.gate_proj.weight"] = rand(INTERMEDIATE, HIDDEN)
        weights[p + "mlp.up_proj.weight"] = rand(INTERMEDIATE, HIDDEN)
        weights[p + "mlp.down_proj.weight"] = rand(HIDDEN, INTERMEDIATE)
    weights["model.norm.weight"] = ones.clone()
    if not tied:
        weights["lm_head.weight"] = rand(vocab, HIDDEN)
    return weights


_LG_NAMES = [  # Llama name fragment -> LG's, in the order transformers' "exaone" conversion undoes them
    ("model.embed_tokens.", "transformer.wte."),
    ("model.layers.", "transformer.h."),
    ("model.norm.", "transformer.ln_f."),
    (".self_attn.o_proj.", ".attn.attention.out_proj."),
    (".self_attn.", ".attn.attention."),
    (".input_layernorm.", ".ln_1."),
    (".post_attention_layernorm.", ".ln_2."),
    (".mlp.gate_proj.", ".mlp.c_fc_0."),
    (".mlp.up_proj.", ".mlp.c_fc_1."),
    (".mlp.down_proj.", ".mlp.c_proj."),
]


def lg_key(name: str) -> str:
    """A Llama parameter name in LG's EXAONE checkpoint layout."""
    for llama, lg in _LG_NAMES:
        name = name.replace(llama, lg)
    return name


def _save_weights(folder: Path, weights: dict) -> None:
    from safetensors.torch import save_file

    save_file(
        {k: weights[k].contiguous() for k in sorted(weights)},
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )


# --- tokenizers ----------------------------------------------------------------------------


def _added_tokens_decoder(backend) -> dict:
    return {
        str(i): {
            "content": t.content,
            "lstrip": t.lstrip,
            "normalized": t.normalized,
            "rstrip": t.rstrip,
            "single_word": t.single_word,
            "special": t.special,
        }
        for i, t in sorted(backend.get_added_tokens_decoder().items())
    }


def _write_tokenizer(folder: Path, backend, config: dict, special_map: dict) -> None:
    """tokenizer.json, tokenizer_config.json (chat template inside, as the hub has it), special_tokens_map.json."""
    backend.save(str(folder / "tokenizer.json"))
    _write_json(folder / "tokenizer_config.json", {"added_tokens_decoder": _added_tokens_decoder(backend), **config})
    _write_json(folder / "special_tokens_map.json", special_map)


def _exaone_tokenizer():
    """Character-level BPE with byte fallback; EXAONE's specials at their ids, nothing added around text."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    from medft.modeling.tiny import character_inventory

    ids = {**EXAONE_KNOWN_IDS, **EXAONE_ASSUMED_IDS}
    by_id = {i: t for t, i in ids.items()}
    vocab = {by_id.get(i, f"[unused{i}]"): i for i in range(max(ids.values()) + 1)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for ch in character_inventory():
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]", byte_fallback=True, fuse_unk=False))
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in sorted(ids, key=ids.get)])
    return tok


def _llama3_tokenizer():
    """The Llama 3 tiktoken BPE as the hub's tokenizer.json: 256 specials, BOS added by the post-processor.

    Special tokens are named as in Llama 3.1's hub tokenizer (128005 and 128011 are reserved there;
    llama-models names them ``<|step_id|>`` and ``<|image|>``, from later Llama versions)."""
    import llama_models
    from llama_models.llama3.tokenizer import Tokenizer as MetaTokenizer
    from tokenizers import processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    names = sorted(LLAMA3_NAMED, key=LLAMA3_NAMED.get)
    names += [f"<|reserved_special_token_{i}|>" for i in range(3, 256 - len(names) + 3)]
    model_file = Path(llama_models.__file__).parent / "llama3" / "tokenizer.model"
    tok = TikTokenConverter(
        vocab_file=str(model_file), pattern=MetaTokenizer.pat_str, extra_special_tokens=names
    ).converted()
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, LLAMA3_NAMED[bos])]
            ),
        ]
    )
    return tok


# --- model folders -------------------------------------------------------------------------


def _common_dims() -> dict:
    return {
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "initializer_range": 0.02,
    }


def build_exaone(root: Path, tied: bool) -> Path:
    """EXAONE 3.5 in LG's layout: tied = the 2.4B (no lm_head key), untied = the 7.8B."""
    folder = Path(root) / ("exaone-3.5-2.4b-instruct" if tied else "exaone-3.5-7.8b-instruct")
    folder.mkdir(parents=True, exist_ok=True)
    tok = _exaone_tokenizer()
    vocab = tok.get_vocab_size()
    _write_json(
        folder / "config.json",
        {
            "activation_function": "silu",
            "architectures": ["ExaoneForCausalLM"],
            "attention_dropout": 0.0,
            "auto_map": {
                "AutoConfig": "configuration_exaone.ExaoneConfig",
                "AutoModelForCausalLM": "modeling_exaone.ExaoneForCausalLM",
            },
            "bos_token_id": 1,
            "embed_dropout": 0.0,
            "eos_token_id": 361,
            **_common_dims(),
            "layer_norm_epsilon": 1e-05,
            "max_position_embeddings": 32768,
            "model_type": "exaone",
            "num_layers": LAYERS,
            "pad_token_id": 0,
            "rope_scaling": {
                "factor": 8.0,
                "high_freq_factor": 4.0,
                "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8192,
                "rope_type": "llama3",
            },
            "rope_theta": 1000000.0,
            "tie_word_embeddings": tied,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.43.0",
            "use_cache": True,
            "vocab_size": vocab,
        },
    )
    _write_json(
        folder / "generation_config.json",
        {"bos_token_id": 1, "eos_token_id": 361, "pad_token_id": 0, "transformers_version": "4.43.0"},
    )
    weights = _llama_weights(vocab, tied, "bfloat16")
    _save_weights(folder, {lg_key(k): v for k, v in weights.items()})
    for name in ("configuration_exaone", "modeling_exaone"):
        (folder / f"{name}.py").write_text(_RAISING_REMOTE_CODE.format(name=name), encoding="utf-8")
    _write_tokenizer(
        folder,
        tok,
        {
            "bos_token": "[BOS]",
            "eos_token": "[|endofturn|]",
            "pad_token": "[PAD]",
            "unk_token": "[UNK]",
            "chat_template": _template("exaone3_5"),
            "clean_up_tokenization_spaces": False,
            "model_max_length": 1000000000000000019884624838656,
            "tokenizer_class": "PreTrainedTokenizerFast",
        },
        {"bos_token": "[BOS]", "eos_token": "[|endofturn|]", "pad_token": "[PAD]", "unk_token": "[UNK]"},
    )
    return folder


def _llama_config(vocab: int, extra: dict) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        **_common_dims(),
        "mlp_bias": False,
        "model_type": "llama",
        "num_hidden_layers": LAYERS,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "tie_word_embeddings": False,
        "use_cache": True,
        "vocab_size": vocab,
        **extra,
    }


def build_llama31(root: Path) -> Path:
    """Llama 3.1 Instruct: llama3 rope scaling, three stop ids, no pad, the real tokenizer."""
    folder = Path(root) / "llama-3.1-8b-instruct"
    folder.mkdir(parents=True, exist_ok=True)
    eos = [128001, 128008, 128009]
    _write_json(
        folder / "config.json",
        _llama_config(
            128256,
            {
                "bos_token_id": 128000,
                "eos_token_id": eos,
                "max_position_embeddings": 131072,
                "rope_scaling": {
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192,
                    "rope_type": "llama3",
                },
                "rope_theta": 500000.0,
                "torch_dtype": "bfloat16",
                "transformers_version": "4.43.0.dev0",
            },
        ),
    )
    _write_json(
        folder / "generation_config.json",
        {
            "bos_token_id": 128000,
            "do_sample": True,
            "eos_token_id": eos,
            "temperature": 0.6,
            "top_p": 0.9,
            "transformers_version": "4.42.3",
        },
    )
    _save_weights(folder, _llama_weights(128256, tied=False, dtype="bfloat16"))
    _write_tokenizer(
        folder,
        _llama3_tokenizer(),
        {
            "bos_token": "<|begin_of_text|>",
            "chat_template": _template("llama3_1"),
            "clean_up_tokenization_spaces": True,
            "eos_token": "<|eot_id|>",
            "model_input_names": ["input_ids", "attention_mask"],
            "model_max_length": 131072,
            "tokenizer_class": "PreTrainedTokenizerFast",
        },
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    )
    return folder


def _solar_tokenizer(folder: Path):
    """The SentencePiece model loaded through transformers (needs sentencepiece + protobuf once);
    its backend becomes tokenizer.json, as the hub ships both files."""
    import shutil

    import mistral_common
    from transformers import LlamaTokenizer

    shutil.copyfile(Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1", folder / "tokenizer.model")
    return LlamaTokenizer.from_pretrained(str(folder), legacy=True, add_bos_token=True).backend_tokenizer


def build_solar(root: Path) -> Path:
    """SOLAR-10.7B-Instruct-v1.0 (6 blocks instead of 48): SentencePiece tokenizer that adds <s>, pad = eos."""
    folder = Path(root) / "solar-10.7b-instruct-v1.0"
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(
        folder / "config.json",
        _llama_config(
            32000,
            {
                "bos_token_id": 1,
                "eos_token_id": 2,
                "pad_token_id": 2,
                "max_position_embeddings": 4096,
                "rope_scaling": None,
                "rope_theta": 10000.0,
                "torch_dtype": "float16",
                "transformers_version": "4.35.2",
            },
        ),
    )
    _write_json(
        folder / "generation_config.json",
        {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "transformers_version": "4.35.2"},
    )
    _save_weights(folder, _llama_weights(32000, tied=False, dtype="float16"))
    _write_tokenizer(
        folder,
        _solar_tokenizer(folder),
        {
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": "<s>",
            "chat_template": _template("solar"),
            "clean_up_tokenization_spaces": False,
            "eos_token": "</s>",
            "legacy": True,
            "model_max_length": 1000000000000000019884624838656,
            "pad_token": "</s>",
            "sp_model_kwargs": {},
            "spaces_between_special_tokens": False,
            "tokenizer_class": "LlamaTokenizer",
            "unk_token": "<unk>",
            "use_default_system_prompt": True,
        },
        {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"},
    )
    return folder
