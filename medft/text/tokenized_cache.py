"""Tokenized and labelled splits cached on disk, keyed by everything that decides them.

Why: tokenizing and labelling costs about 4 s per 20,000 rows on 2 cores (forked workers),
paid again by every run and sweep trial over the same data. datasets' own ``map`` cache does
not apply: medft labels rows in its own loop so that unusable rows are counted by reason,
not dropped. A stale hit would train on wrong labels without a trace, so the key covers
every input of ``medft.text.labels.tokenize_splits``:

- the records: the content hash of the prepared splits (``data_report["fingerprint"]``);
- the tokenizer: its full ``tokenizer.json`` (vocabulary, merges, normalizer, added tokens),
  special tokens and their ids, the chat template it renders with, and its class;
- the template spec (``medft.text.templates.TemplateSpec``) and ``train.max_length``;
- the code: ``medft/labels.py`` and ``medft/templates/`` as they are on disk.

Tokenizers without a ``tokenizer.json`` (slow, Python-only) are not cached, and neither is
output from a replaced ``tokenize_splits`` (tests plant their own).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from medft.data.cache import cache_root, load_cached, save, source_digest

KEY_VERSION = 1


def _code_digest() -> str:
    from medft.text import labels, templates

    return source_digest([Path(labels.__file__), *Path(templates.__file__).parent.iterdir()])


def tokenizer_digest(tokenizer) -> str | None:
    """What the labels depend on in a tokenizer; None for a tokenizer that cannot be pinned."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    described = {
        "class": type(tokenizer).__name__,
        "chat_template": tokenizer.chat_template,
        "special_tokens": tokenizer.special_tokens_map,
        "ids": [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id],
        "flags": [
            getattr(tokenizer, name, None)
            for name in (
                "add_bos_token",
                "add_eos_token",
                "padding_side",
                "truncation_side",
                "clean_up_tokenization_spaces",
            )
        ],
    }
    digest = hashlib.sha256(backend.to_str().encode())
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def cache_key(data_fingerprint: str | None, tokenizer, spec, max_length: int) -> str | None:
    """The entry name, or None when the output cannot be keyed safely (then nothing is cached)."""
    from medft.text import labels

    own = getattr(labels.tokenize_splits, "__module__", None) == "medft.text.labels"
    tokenizer_hash = tokenizer_digest(tokenizer)
    if not (data_fingerprint and own and tokenizer_hash):
        return None
    parts = [KEY_VERSION, data_fingerprint, tokenizer_hash, repr(spec), int(max_length), _code_digest()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def tokenize_cached(
    datasets, tokenizer, spec, max_length: int, data_cfg: Any, data_fingerprint: str | None, progress: bool = True
):
    """``labels.tokenize_splits``'s result, from disk when its inputs are unchanged.

    Returns (tokenized DatasetDict, tokenization report, cache info for the data report).
    """
    from medft.text import labels

    started = time.perf_counter()
    key = cache_key(data_fingerprint, tokenizer, spec, max_length)
    if key is None:
        tokenized, report = labels.tokenize_splits(datasets, tokenizer, spec, max_length, progress=progress)
        return tokenized, report, {"hit": False, "key": None, "reason": "not cacheable"}
    entry = cache_root(data_cfg) / "tokenized" / key
    cached = load_cached(entry)
    if cached is not None:
        tokenized, report = cached
        return (
            tokenized,
            report,
            {"hit": True, "key": key, "path": str(entry), "seconds": round(time.perf_counter() - started, 4)},
        )
    tokenized, report = labels.tokenize_splits(datasets, tokenizer, spec, max_length, progress=progress)
    save(entry, tokenized, report)
    return (
        tokenized,
        report,
        {"hit": False, "key": key, "path": str(entry), "seconds": round(time.perf_counter() - started, 4)},
    )
