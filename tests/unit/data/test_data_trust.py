"""Data users can trust: group-aware splits, a report that adds up, the contamination check,
and cache keys that see code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_data import all_records, answer, data_cfg, hira_line, question, write_json, yaml_cfg

from medft.config import SAMPLES_DIR
from medft.data import collect_records
from medft.data.report import SourceReport, summary_table
from medft.data.splits import SPLITS
from medft.runtime.errors import DataError

from conftest import REPO, compose_config

INTENTIONS = ("원인", "증상", "진단", "치료", "약물", "예방", "운동", "식이, 생활")
DISEASES = (("순환기질환", "고혈압"), ("호흡기질환", "천식"), ("소화기질환", "위염"))


def folder_tree(root: Path, n_q: int = 4, n_a: int = 3) -> Path:
    """24 category/disease/intention folders, each with ``n_q`` questions and ``n_a`` answers."""
    n = 0
    for category, disease in DISEASES:
        for intention in INTENTIONS:
            group = (category, disease, intention)
            for q in range(n_q):
                question(root, group, f"HC-Q-{n:03d}{q}", f"{disease} {intention} 질문 {q}번입니다?")
            for a in range(n_a):
                answer(root, group, f"HC-A-{n:03d}{a}", f"{disease} {intention}에 대한 답변 {a}입니다.")
            n += 1
    return root


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def held_out_answers_seen_in_training(splits: dict) -> list[str]:
    train = {_norm(r["messages"][-1]["content"]) for r in splits["train"]}
    return [r["id"] for s in ("validation", "test") for r in splits[s] if _norm(r["messages"][-1]["content"]) in train]


# --------------------------------------------------------------------------- group-aware splits
def test_no_held_out_answer_is_a_training_answer_in_the_samples():
    splits, report = collect_records(yaml_cfg("sample"), progress=False)
    assert held_out_answers_seen_in_training(splits) == []
    assert all(splits[s] for s in SPLITS)
    assert report.leakage["answers_in_several_splits"] == 0


@pytest.mark.parametrize(("pairing", "cap"), [("first", 3), ("random", 3), ("all", 2)])
def test_no_held_out_answer_is_a_training_answer_in_a_tree_with_shared_answers(tmp_path, pairing, cap):
    root = folder_tree(tmp_path / "aihub")
    cfg = data_cfg({"aihub": {"kind": "aihub", "path": str(root), "pairing": pairing, "pairing_cap": cap}})
    splits, report = collect_records(cfg, progress=False)
    assert held_out_answers_seen_in_training(splits) == []
    homes: dict[str, set[str]] = {}
    for split in SPLITS:
        for r in splits[split]:
            homes.setdefault(r["meta"]["intention"] + r["meta"]["disease"], set()).add(split)
    assert all(len(h) == 1 for h in homes.values())  # a folder never straddles two splits
    info = report.sources["aihub"].info
    assert info["groups"]["count"] == 24 and info["groups"]["examples"]
    rows = len(all_records(splits))
    # Ratios count rows; whole folders move, so each carved split is within one folder of 10%.
    folder = rows // 24
    for split in ("validation", "test"):
        assert abs(len(splits[split]) - 0.1 * rows) <= folder, (split, len(splits[split]), rows)


def test_carved_splits_stay_seeded_and_stratified_by_category(tmp_path):
    root = folder_tree(tmp_path / "aihub")

    def carved(seed):
        cfg = data_cfg(
            {"aihub": {"kind": "aihub", "path": str(root)}}, seed=seed, validation_ratio=0.34, test_ratio=0.34
        )
        return collect_records(cfg, progress=False)[0]

    ids = {seed: {s: sorted(r["id"] for r in carved(seed)[s]) for s in SPLITS} for seed in (1, 2)}
    assert ids[1] == {s: sorted(r["id"] for r in carved(1)[s]) for s in SPLITS} and ids[1] != ids[2]
    splits = carved(1)
    for split in SPLITS:  # 8 folders per category, about a third of each category in each split
        categories = [r["meta"]["category"] for r in splits[split]]
        assert sorted(set(categories)) == sorted(c for c, _ in DISEASES)
        assert max(categories.count(c) for c, _ in DISEASES) - min(categories.count(c) for c, _ in DISEASES) <= 8


def _official_tree(root: Path, shared: str) -> Path:
    tl = root / "Training" / "02.라벨링데이터" / "TL"
    vl = root / "Validation" / "02.라벨링데이터" / "VL"
    folder_tree(tl, n_q=2, n_a=1)
    group = ("순환기질환", "고혈압", "원인")
    question(vl, group, "HC-Q-9000001", "검증 질문입니다?")
    answer(vl, group, "HC-A-9000001", shared)
    group = ("순환기질환", "고혈압", "증상")
    question(vl, group, "HC-Q-9000002", "다른 검증 질문입니다?")
    answer(vl, group, "HC-A-9000002", "검증에만 있는 답변입니다.")
    return root


def test_an_official_validation_answer_equal_to_a_training_answer_is_leakage(tmp_path):
    root = _official_tree(
        tmp_path / "71762", "고혈압  원인에 대한 답변 0입니다!"
    )  # a TL answer, spaced and punctuated apart
    leak = r"^1 answers appear in more than one split \(e\.g\. aihub/TL/.*data\.allow_leakage=true"
    with pytest.raises(DataError, match=leak):
        collect_records(data_cfg({"aihub": {"kind": "aihub", "path": str(root)}}), progress=False)
    splits, report = collect_records(
        data_cfg({"aihub": {"kind": "aihub", "path": str(root)}}, allow_leakage=True), progress=False
    )
    assert len(splits["validation"]) == 2 and held_out_answers_seen_in_training(splits) == []
    assert report.leakage["by_rule"]["answer"]["dropped"] == {"train": 2}
    source = report.sources["aihub"]
    assert source.dropped["answer_in_another_split"] == 2
    assert source.rows_dropped.examples["answer_in_another_split"][0].startswith("aihub/TL/순환기질환/고혈압/원인/")


def test_an_answer_shared_across_sources_is_leakage(tmp_path):
    for name in ("a", "b"):
        lines = [hira_line(i, instruction=f"{name} 질문 {i}", output=f"{name} 답변 {i}") for i in range(10)]
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.jsonl").write_text("\n".join(lines), encoding="utf-8")
    (tmp_path / "b" / "test.jsonl").write_text(
        hira_line(99, instruction="다른 질문", output="a 답변 3"), encoding="utf-8"
    )
    sources = {n: {"kind": "hira", "path": str(tmp_path / n)} for n in ("a", "b")}
    with pytest.raises(
        DataError, match=r"^1 answers appear in more than one split \(e\.g\. a/train/4 \(train -> kept in test\)\)"
    ):
        collect_records(data_cfg(sources), progress=False)


# --------------------------------------------------------------------------- a report that adds up
def messy_tree(root: Path) -> Path:
    """One of every skip kind, plus answers the pairing leaves and rows cleaning drops."""
    g1, g2 = ("순환기질환", "고혈압", "원인"), ("순환기질환", "고혈압", "약물")
    for i in range(6):
        question(root, g1, f"HC-Q-100000{i}", f"고혈압 원인 질문 {i}번입니다?")
    question(root, g1, "HC-Q-1000010", "고혈압 원인 질문 0번입니다?")  # same text: an exact duplicate row
    question(root, g1, "HC-Q-1000011", "고혈압 원인 질문 0번 입니다!")  # a near duplicate row
    question(root, g1, "HC-Q-1000012", "&nbsp;")  # empty once cleaned
    question(root, g1, "HC-Q-1000013", "아" * 80)  # too long for max_text_chars=60
    answer(root, g1, "HC-A-10000001", "싱겁게 드세요.")
    answer(root, g1, "HC-A-10000002", "운동하세요.")  # left unused by pairing=first
    for i in range(4):
        question(root, g2, f"HC-Q-200000{i}", f"혈압약 질문 {i}번입니다?")
    answer(root, g2, "HC-A-20000001", "매일 같은 시간에 드세요.")
    bad = root / "1.질문" / g1[0] / g1[1] / g1[2]
    (bad / "HC-Q-9000001.json").write_text("{not json", encoding="utf-8")  # invalid JSON
    write_json(bad / "HC-Q-9000002.json", {"fileName": "HC-Q-9000002"})  # missing field
    write_json(bad / "HC-Q-9000003.json", {"fileName": "HC-Q-9000003", "question": 7})  # wrong type
    write_json(bad / "HC-Q-9000004.json", {"fileName": "HC-Q-1000000", "question": "다른 글"})  # duplicate file name
    answer(root, g2, "HC-A-29999999", "")  # empty answer
    question(root, ("순환기질환", "고혈압", "운동"), "HC-Q-3000001", "운동해도 되나요?")  # no answer in its folder
    answer(root, ("순환기질환", "고혈압", "재활"), "HC-A-40000001", "천천히 걸으세요.")  # no question in its folder
    write_json(root / "1.질문" / "순환기질환" / "고혈압" / "HC-Q-5000001.json", {"question": "층이 모자란 질문"})
    return root


def test_both_ledgers_add_up_with_every_skip_kind(tmp_path):
    root = messy_tree(tmp_path / "aihub")
    cfg = data_cfg(
        {"aihub": {"kind": "aihub", "path": str(root), "max_records": 4}}, max_text_chars=60, max_skip_ratio=1.0
    )
    splits, report = collect_records(cfg, progress=False)
    s = report.to_dict()["sources"]["aihub"]
    assert s["unit"] == "files"
    assert set(s["skipped"]) == {
        "question_invalid_json",
        "question_missing_field",
        "question_wrong_type",
        "question_duplicate_file_name",
        "empty_answer",
        "question_without_answer_in_group",
        "orphan_answer",
        "question_outside_category_disease_intention",
    }
    unused = ["2.답변/순환기질환/고혈압/원인/HC-A-10000002.json"]
    assert s["left_unused"]["answer_not_chosen_by_pairing"] == {"count": 1, "examples": unused}
    assert s["read"] == 25 and s["read"] == s["used"] + s["skipped_total"] + s["left_unused_total"]
    assert {"duplicate", "near_duplicate", "empty_text", "too_long_text", "max_records"} <= set(s["dropped"])
    assert s["formed"] == 14 and s["formed"] == s["kept"] + s["dropped_total"]
    assert s["kept"] == sum(s["splits"].values()) == len(all_records(splits))
    table = summary_table(report.to_dict())
    assert f"files: read 25 = used {s['used']} + skipped {s['skipped_total']} + left unused 1" in table
    assert f"rows: formed 14 = kept {s['kept']} + dropped {s['dropped_total']}" in table


def test_hira_ledgers_add_up(tmp_path):
    lines = [hira_line(i) for i in range(20)]
    lines[2] = "{broken"
    lines[3] = hira_line(3, output="")
    lines[4] = hira_line(4, instruction="")
    lines[5] = hira_line(5, metadata="not an object")
    lines[6] = hira_line(0)  # a duplicate row
    (tmp_path / "train.jsonl").write_text("\n".join(lines), encoding="utf-8")
    _, report = collect_records(
        data_cfg({"hira": {"kind": "hira", "path": str(tmp_path)}}, max_skip_ratio=0.5), progress=False
    )
    s = report.to_dict()["sources"]["hira"]
    assert (s["unit"], s["read"], s["used"], s["skipped_total"], s["left_unused_total"]) == ("lines", 20, 16, 4, 0)
    assert (s["formed"], s["kept"], s["dropped"]["duplicate"]["count"]) == (16, 15, 1)


def test_a_ledger_that_does_not_add_up_fails_naming_the_source_and_the_numbers():
    source = SourceReport(name="aihub", kind="aihub", unit="files", read=10, used=7)
    source.skip("question_invalid_json", "a.json")
    with pytest.raises(DataError, match=r"^data source 'aihub': read 10 files but used \+ skipped \+ left unused = 8 "):
        source.verify()
    source = SourceReport(name="hira", kind="hira", read=1, used=1)
    source.start_rows(5)
    source.kept = 3
    source.skip("duplicate", "hira/train/2")
    with pytest.raises(DataError, match=r"^data source 'hira': formed 5 rows but kept \+ dropped = 4 "):
        source.verify()


# --------------------------------------------------------------------------- contamination
KORMEDMCQA = SAMPLES_DIR / "eval" / "kormedmcqa"


def planted_hira(folder: Path) -> Path:
    planted = json.loads((KORMEDMCQA / "doctor" / "test.json").read_text(encoding="utf-8"))[0]["question"]
    lines = [hira_line(i) for i in range(12)] + [hira_line(12, instruction=planted, output="급성 하벽 심근경색입니다.")]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("\n".join(lines), encoding="utf-8")
    return folder


def _contamination_cfg(folder: Path, *extra: str):
    return compose_config(
        [
            "data=hira",
            f"data.sources.hira.path={folder}",
            "data.contamination_benchmarks=[kormedmcqa]",
            "eval=kormedmcqa",
            f"eval.path={KORMEDMCQA}",
            *extra,
        ]
    )


def test_a_planted_benchmark_question_fails_the_run(tmp_path):
    from medft.data.cache import prepare_data
    from medft.evals.contamination import check_contamination

    cfg = _contamination_cfg(planted_hira(tmp_path / "hira"), f"data.cache_dir={tmp_path / 'cache'}")
    datasets, report = prepare_data(cfg.data, progress=False)
    with pytest.raises(DataError) as err:
        check_contamination(cfg, datasets, report)
    message = str(err.value)
    assert "\n" not in message and message.startswith("1 of 12 kormedmcqa questions are in the training data")
    assert "data.allow_contamination=true" in message
    found = err.value.report["contamination"]["benchmarks"]["kormedmcqa"]
    assert found["found"] == 1 and found["examples"][0]["item"].startswith("doctor/")
    allowed = _contamination_cfg(
        tmp_path / "hira", f"data.cache_dir={tmp_path / 'cache'}", "data.allow_contamination=true"
    )
    datasets, report = prepare_data(allowed.data, progress=False)
    assert report["cache"]["hit"]  # the check's settings are not part of the cache key
    assert check_contamination(allowed, datasets, report)["benchmarks"]["kormedmcqa"]["found"] == 1
    assert "contamination: kormedmcqa 1 of 12 questions found" in summary_table(report)


def test_a_question_followed_by_its_options_is_found_and_a_short_stem_is_not():
    from medft.data.records import normalise_question as n
    from medft.evals.contamination import Index

    index = Index()
    index.add("long", [("question", "신기능이 떨어진 제2형 당뇨병 성인 환자에게 금기인 약물은?")])
    index.add("short", [("question", "옳은 것은?")])
    followed = n("신기능이 떨어진 제2형 당뇨병 성인 환자에게 금기인 약물은?\nA. 메트포르민")
    assert index.find(followed) == [("long", "question")]
    assert index.find(n("옳은 것은? 고혈압 약은 매일 드세요")) == []
    assert index.find(n("옳은 것은?")) == [("short", "question")]


def test_own_pubmedqa_items_are_reported_not_failed(tmp_path):
    """The PubMedQA-Ko benchmark leaves out what the run trains on; heldout is the run's own test split."""
    from medft.evals.contamination import check_contamination

    eval_copy = SAMPLES_DIR / "eval" / "pubmedqa_ko.json"
    cfg = compose_config(
        [
            "data=pubmedqa_ko",
            f"data.sources.pubmedqa_ko.path={eval_copy}",
            "eval=pubmedqa_ko",
            f"eval.path={eval_copy}",
            "train.eval_benchmarks=[pubmedqa_ko,heldout]",
        ]
    )
    splits, report = collect_records(cfg.data, progress=False)
    block = check_contamination(cfg, splits, {})
    result = block["benchmarks"]["pubmedqa_ko"]
    assert result["found"] == 0 and result["excluded_at_scoring"] == len(splits["train"]) + len(splits["validation"])
    assert "skipped" in block["benchmarks"]["heldout"]


def test_a_benchmark_that_cannot_be_read_is_reported_as_not_checked(tmp_path, monkeypatch, caplog):
    import datasets

    from medft.evals.contamination import check_contamination

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    cfg = compose_config(
        [
            "data=hira",
            f"data.sources.hira.path={planted_hira(tmp_path / 'hira')}",
            "data.contamination_benchmarks=[kormedmcqa]",
        ]
    )
    splits, _ = collect_records(cfg.data, progress=False)
    block = check_contamination(cfg, splits, {})
    assert "sean0042/KorMedMCQA" in block["benchmarks"]["kormedmcqa"]["error"]
    assert "benchmark kormedmcqa not checked" in caplog.text


def test_prepare_fails_on_contamination_in_one_line_and_writes_the_report(tmp_path):
    folder = planted_hira(tmp_path / "hira")
    env = {**os.environ, "MEDFT_CACHE": str(tmp_path / "cache")}
    run = tmp_path / "run"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "medft.prepare",
            "data=hira",
            f"data.sources.hira.path={folder}",
            "data.contamination_benchmarks=[kormedmcqa]",
            "eval=kormedmcqa",
            f"eval.path={KORMEDMCQA}",
            f"hydra.run.dir={run}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("medft: error:")]
    assert len(errors) == 1 and "kormedmcqa questions are in the training data" in errors[0], out.stderr[-2000:]
    report = json.loads((run / "data_report.json").read_text(encoding="utf-8"))
    assert report["contamination"]["benchmarks"]["kormedmcqa"]["found"] == 1


# --------------------------------------------------------------------------- cache keys that see code
def test_a_change_in_the_data_code_gives_a_new_cache_key(monkeypatch, tmp_path):
    from medft.data import cache

    cfg = yaml_cfg("sample")
    before = cache.fingerprint_inputs(cfg)
    assert cache.fingerprint_inputs(cfg) == before
    monkeypatch.setattr(cache, "data_code_digest", lambda: "splits.py edited")
    assert cache.fingerprint_inputs(cfg) != before


def test_the_code_digest_follows_file_contents(tmp_path):
    from medft.data.cache import data_code_digest, source_digest

    code = tmp_path / "loader.py"
    code.write_text("x = 1\n")
    first = source_digest([code])
    code.write_text("x = 2\n")
    assert source_digest([code]) != first
    assert len(data_code_digest()) == 64 and data_code_digest() == data_code_digest()
