"""`model=tiny`: a small random Llama plus a tokenizer that covers Korean, built offline.

The model is written to a local checkpoint folder once (keyed by its architecture) and
then loaded through the very same ``from_pretrained`` path as the real models, so
quantization, LoRA, freezing and saving are exercised exactly as for EXAONE or Llama.

The tokenizer is character-level over ASCII, the 2,350 Hangul syllables of KS X 1001,
compatibility jamo and common symbols, with byte fallback for anything else: no
training, no download, and byte-identical on every machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from medft.text.templates import TEMPLATES

TOKENIZER_VERSION = 1
PAD, BOS, UNK = "[PAD]", "[BOS]", "<unk>"
_EXTRA_SYMBOLS = "·…“”‘’–—℃°±×÷→←↑↓~※☆★○●◎□■△▲▽▼①②③④⑤⑥⑦⑧⑨⑩㎎㎏㎖㎝㎜㎞㎡µ"


def cache_root() -> Path:
    return Path(os.environ.get("MEDFT_CACHE", Path.home() / ".cache" / "medft"))


def _special_tokens() -> list[str]:
    tokens = [PAD, BOS, UNK]
    for spec in TEMPLATES.values():
        for token in (spec.bos_token, spec.pad_token, spec.end_of_turn, *spec.special_tokens):
            if token and token not in tokens:
                tokens.append(token)
    return tokens


def _hangul_ksx1001() -> list[str]:
    """The 2,350 precomposed syllables of KS X 1001 (what EUC-KR can encode)."""
    syllables = []
    for lead in range(0xB0, 0xC9):
        for trail in range(0xA1, 0xFF):
            try:
                ch = bytes([lead, trail]).decode("euc-kr")
            except UnicodeDecodeError:
                continue
            if "\uac00" <= ch <= "\ud7a3":
                syllables.append(ch)
    return syllables


def character_inventory() -> list[str]:
    chars = [chr(c) for c in range(0x20, 0x7F)] + ["\n", "\t"]
    chars += [chr(c) for c in range(0x3131, 0x3164)]  # compatibility jamo
    chars += _hangul_ksx1001()
    chars += list(_EXTRA_SYMBOLS)
    seen, ordered = set(), []
    for ch in chars:
        if ch not in seen:
            seen.add(ch)
            ordered.append(ch)
    return ordered


def build_tokenizer():
    """A fast tokenizer: specials, 256 byte-fallback tokens, then one token per character."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    specials = _special_tokens()
    vocab: dict[str, int] = {}
    for token in specials:
        vocab[token] = len(vocab)
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for ch in character_inventory():
        vocab.setdefault(ch, len(vocab))

    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, byte_fallback=True, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        unk_token=UNK,
        eos_token=TEMPLATES["exaone3_5"].end_of_turn,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )


def _fingerprint(arch: dict) -> str:
    blob = json.dumps({"arch": arch, "tokenizer": TOKENIZER_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def materialize(arch: dict) -> Path:
    """Return a local checkpoint folder for this architecture, building it on first use.

    The folder is written to a temporary name and renamed into place, so concurrent
    runs (a sweep, DDP ranks) never see a half-written checkpoint.
    """
    target = cache_root() / "tiny" / _fingerprint(arch)
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch["hidden_size"],
        intermediate_size=arch["intermediate_size"],
        num_hidden_layers=arch["num_hidden_layers"],
        num_attention_heads=arch["num_attention_heads"],
        num_key_value_heads=arch["num_key_value_heads"],
        max_position_embeddings=arch["max_position_embeddings"],
        tie_word_embeddings=arch["tie_word_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(arch["seed"])
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
