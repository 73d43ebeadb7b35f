"""Cleaning shared by all sources, and weighted mixtures of sources."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from omegaconf import OmegaConf

from medft.config import DataConfig
from medft.data import collect_records
from medft.data.clean import mask_personal_data, normalise_text
from medft.runtime.errors import DataError


def _cfg(sources: dict, **overrides):
    return OmegaConf.merge(OmegaConf.structured(DataConfig), {"name": "t", "sources": sources, **overrides})


def _hira(folder, rows, name="train.jsonl"):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"instruction": q, "input": "", "output": a, "metadata": {}}, ensure_ascii=False) for q, a in rows
    ]
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("  감기에&nbsp;걸렸어요 &amp; 열이 나요 ", "감기에 걸렸어요 & 열이 나요"),
        ("첫 줄\r\n\r\n\r\n\r\n둘째\t\t줄   끝", "첫 줄\n\n둘째 줄 끝"),
        ("\u1100\u1161\u11a8 전각\u3000공백", "각 전각 공백"),  # NFD jamo -> NFC syllable, ideographic space
    ],
)
def test_text_normalisation(raw, clean):
    assert normalise_text(raw) == clean


@pytest.mark.parametrize(
    "text, masked, kind",
    [
        ("제 주민번호는 900101-1234567 입니다", "제 주민번호는 [주민등록번호] 입니다", "resident_registration_number"),
        ("연락처 010-1234-5678로 주세요", "연락처 [전화번호]로 주세요", "phone_number"),
        ("병원 02-123-4567, 휴대폰 01012345678", "병원 [전화번호], 휴대폰 [전화번호]", "phone_number"),
        ("메일 kim.doctor+qa@hospital.co.kr 로", "메일 [이메일] 로", "email"),
        ("환자수 1,234,567명, 2023-01-01, 코드 J00-J06", "환자수 1,234,567명, 2023-01-01, 코드 J00-J06", None),
    ],
)
def test_personal_data_is_masked_and_counted(text, masked, kind):
    counts = Counter()
    assert mask_personal_data(text, counts) == masked
    assert (sum(counts.values()) > 0) == (kind is not None)
    if kind:
        assert counts[kind] >= 1


def test_cleaning_counts_every_row_it_drops(tmp_path):
    rows = [(f"질문 {i}번입니다", f"답변 {i}번입니다") for i in range(40)]
    rows += [
        ("질문 1번입니다", "답변 1번입니다"),  # exact duplicate
        ("질문  1번입니다!", "답변 1번입니다."),  # same after normalisation
        ("&nbsp;", "답"),  # empty once entities are decoded
        ("긴 질문", "가" * 30),  # longer than max_text_chars=20
        ("전화는 010-9876-5432", "메일은 a@b.kr 입니다"),  # kept, masked
    ]
    folder = _hira(tmp_path / "h", rows)
    splits, report = collect_records(
        _cfg({"h": {"kind": "hira", "path": str(folder)}}, max_text_chars=20, max_skip_ratio=0.5), progress=False
    )
    source = report.sources["h"]
    assert dict(source.dropped) == {"duplicate": 1, "near_duplicate": 1, "empty_text": 1, "too_long_text": 1}
    assert source.read == 45 and source.kept == 41
    assert source.info["personal_data_masked"] == {"email": 1, "phone_number": 1}
    texts = [m["content"] for s in splits.values() for r in s for m in r["messages"]]
    assert "전화는 [전화번호]" in texts and not any("010-9876" in t for t in texts)


def test_masking_can_be_turned_off(tmp_path):
    folder = _hira(tmp_path / "h", [(f"질문 {i}", f"답 {i}") for i in range(9)] + [("010-1111-2222", "답")])
    splits, _ = collect_records(
        _cfg({"h": {"kind": "hira", "path": str(folder)}}, mask_personal_data=False), progress=False
    )
    assert any(r["messages"][0]["content"] == "010-1111-2222" for s in splits.values() for r in s)


def test_weighted_mixture_takes_the_largest_mix_with_those_shares(tmp_path):
    a = _hira(tmp_path / "a", [(f"가 질문 {i}", f"가 답 {i}") for i in range(100)])
    b = _hira(tmp_path / "b", [(f"나 질문 {i}", f"나 답 {i}") for i in range(30)])
    cfg = _cfg(
        {"a": {"kind": "hira", "path": str(a), "weight": 3}, "b": {"kind": "hira", "path": str(b), "weight": 1}},
        validation_ratio=0.0,
        test_ratio=0.0,
    )
    splits, report = collect_records(cfg, progress=False)
    train = Counter(r["meta"]["source"] for r in splits["train"])
    b_rows = report.mixture["b"]["available"]
    assert train["b"] == b_rows and train["a"] == 3 * b_rows  # a is cut to 3x b's rows, b keeps all
    assert report.mixture["a"]["used"] == train["a"] and report.mixture["a"]["share"] == 0.75
    again, _ = collect_records(cfg, progress=False)
    assert [r["id"] for r in again["train"]] == [r["id"] for r in splits["train"]]


def test_zero_weight_is_a_one_line_error(tmp_path):
    a = _hira(tmp_path / "a", [(f"질문 {i}", f"답 {i}") for i in range(10)])
    with pytest.raises(DataError, match=r"^data.sources.a.weight=0 must be > 0"):
        collect_records(_cfg({"a": {"kind": "hira", "path": str(a), "weight": 0}}), progress=False)


def test_sources_compose_as_a_list_of_data_configs():
    """`data=[aihub,hira]`: several data configs merge their sources into one mixture."""
    from conftest import compose_config

    cfg = compose_config(["data=[aihub,hira]", "data.sources.aihub.weight=2", "data.sources.hira.weight=1"])
    assert set(cfg.data.sources) == {"aihub", "hira"}
    assert (cfg.data.sources.aihub.weight, cfg.data.sources.hira.weight) == (2.0, 1.0)
