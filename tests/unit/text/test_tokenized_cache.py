"""Tokenized splits come from disk only when every input of the labelling is unchanged."""

from __future__ import annotations

import json

import pytest

from medft.text import labels, tokenized_cache
from medft.text.templates import get_spec


@pytest.fixture()
def prepared(compose, tmp_path):
    from medft.data.cache import prepare_data

    data_cfg = compose([f"data.cache_dir={tmp_path / 'cache'}"]).data
    datasets, report = prepare_data(data_cfg, progress=False)
    return data_cfg, datasets, report["fingerprint"]


def _run(prepared, tokenizer, max_length=512, spec="exaone3_5", fingerprint=None):
    data_cfg, datasets, data_fingerprint = prepared
    return tokenized_cache.tokenize_cached(
        datasets, tokenizer, get_spec(spec), max_length, data_cfg, fingerprint or data_fingerprint, progress=False
    )


def test_second_call_is_a_hit_with_the_same_rows_and_report(prepared, tiny_tokenizer):
    first, first_report, first_info = _run(prepared, tiny_tokenizer)
    second, second_report, second_info = _run(prepared, tiny_tokenizer)
    assert not first_info["hit"] and second_info["hit"] and first_info["key"] == second_info["key"]
    assert second_report == first_report
    for split in first:
        assert second[split].to_dict() == first[split].to_dict()
    fresh, fresh_report = labels.tokenize_splits(
        prepared[1], tiny_tokenizer, get_spec("exaone3_5"), 512, progress=False
    )
    assert (
        second["train"].to_dict() == fresh["train"].to_dict() and json.loads(json.dumps(fresh_report)) == second_report
    )


def test_every_input_of_the_labels_is_in_the_key(prepared, tiny_tokenizer):
    base = _run(prepared, tiny_tokenizer)[2]["key"]
    assert _run(prepared, tiny_tokenizer, max_length=256)[2]["key"] != base
    assert _run(prepared, tiny_tokenizer, fingerprint="other records")[2]["key"] != base
    assert _run(prepared, tiny_tokenizer, spec="llama3_1")[2]["key"] != base
    changed = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    changed.chat_template = tiny_tokenizer.chat_template
    changed.pad_token = changed.eos_token  # pad == eos changes which positions are masked
    assert tokenized_cache.cache_key("f", changed, get_spec("exaone3_5"), 512) != tokenized_cache.cache_key(
        "f", tiny_tokenizer, get_spec("exaone3_5"), 512
    )
    retemplated = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    retemplated.chat_template = (tiny_tokenizer.chat_template or "") + " "
    assert tokenized_cache.cache_key("f", retemplated, get_spec("exaone3_5"), 512) != tokenized_cache.cache_key(
        "f", tiny_tokenizer, get_spec("exaone3_5"), 512
    )


def test_code_changes_change_the_key(prepared, tiny_tokenizer, monkeypatch):
    base = tokenized_cache.cache_key("f", tiny_tokenizer, get_spec("exaone3_5"), 512)
    monkeypatch.setattr(tokenized_cache, "_code_digest", lambda: "labels.py edited")
    assert tokenized_cache.cache_key("f", tiny_tokenizer, get_spec("exaone3_5"), 512) != base


def test_a_replaced_labeller_or_missing_fingerprint_is_never_cached(prepared, tiny_tokenizer, monkeypatch):
    _run(prepared, tiny_tokenizer)  # a good entry exists
    calls = []

    def planted(datasets, tokenizer, spec, max_length, progress=True):
        calls.append(max_length)
        return {"train": "planted"}, {"train": {"rows": 0}}

    monkeypatch.setattr(labels, "tokenize_splits", planted)
    tokenized, _, info = _run(prepared, tiny_tokenizer)
    assert (
        tokenized == {"train": "planted"}
        and calls == [512]
        and info == {"hit": False, "key": None, "reason": "not cacheable"}
    )
    monkeypatch.undo()
    assert tokenized_cache.cache_key(None, tiny_tokenizer, get_spec("exaone3_5"), 512) is None


def test_an_unfinished_entry_is_recomputed(prepared, tiny_tokenizer):
    _, _, info = _run(prepared, tiny_tokenizer)
    marker = tokenized_cache.Path(info["path"]) / "complete"
    marker.unlink()  # as if the writer was killed before the rename
    again = _run(prepared, tiny_tokenizer)[2]
    assert not again["hit"] and marker.is_file()
    assert _run(prepared, tiny_tokenizer)[2]["hit"]
