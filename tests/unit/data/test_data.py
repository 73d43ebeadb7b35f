"""The data layer: record contract, per-source loaders, splits, leakage and the report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from medft.config import CONF_DIR, SAMPLES_DIR, DataConfig
from medft.data import collect_records, load_datasets
from medft.data.records import ROLES, question_key
from medft.data.splits import SPLITS
from medft.runtime.errors import DataError

SAMPLE_AIHUB = SAMPLES_DIR / "aihub"


# --------------------------------------------------------------------------- helpers
def data_cfg(sources: dict, **overrides):
    """A DataConfig as Hydra would compose it (kinds become enum members)."""
    return OmegaConf.merge(OmegaConf.structured(DataConfig), {"name": "test", "sources": sources, **overrides})


def yaml_cfg(name: str, **overrides):
    base = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml"))
    return OmegaConf.merge(base, overrides)


def write_json(path: Path, obj, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + json.dumps(obj, ensure_ascii=False).encode())
    return path


def question(root: Path, group: tuple[str, str, str], name: str, text: str, *, bom: bool = False) -> Path:
    category, disease, intention = group
    return write_json(
        root / "1.질문" / category / disease / intention / f"{name}.json",
        {
            "fileName": name,
            "participantsInfo": {"participantID": "P1", "gender": "여", "age": "30대"},
            "disease_category": category,
            "disease_name": {"kor": disease, "eng": "Disease"},
            "intention": intention,
            "question": text,
            "entities": [],
        },
        bom,
    )


def answer(
    root: Path, group: tuple[str, str, str], name: str, body: str, *, intro: str = "", bom: bool = False
) -> Path:
    category, disease, intention = group
    return write_json(
        root / "2.답변" / category / disease / intention / f"{name}.json",
        {
            "fileName": name,
            "disease_category": category,
            "disease_name": {"kor": disease, "eng": "Disease"},
            "department": ["내과", "가정의학과"],
            "intention": intention,
            "answer": {"intro": intro, "body": body, "conclusion": ""},
            "num_of_words": 3,
        },
        bom,
    )


G1 = ("순환기질환", "고혈압", "식이, 생활")
G2 = ("순환기질환", "고혈압", "약물")


def pairing_tree(root: Path) -> Path:
    """Group G1: 3 questions, 2 answers; group G2: 2 questions, 1 answer."""
    for i in range(3):
        question(root, G1, f"HC-Q-000000{i}", f"고혈압 식사 질문 {i}번입니다?")
    answer(root, G1, "HC-A-00000001", "싱겁게 드세요.")
    answer(root, G1, "HC-A-00000002", "채소를 충분히 드세요.")
    for i in range(2):
        question(root, G2, f"HC-Q-100000{i}", f"혈압약 질문 {i}번입니다?")
    answer(root, G2, "HC-A-10000001", "약은 매일 같은 시간에 드세요.")
    return root


def all_records(splits: dict) -> list[dict]:
    return [r for s in SPLITS for r in splits[s]]


def compose_sample():
    """cfg.data for `data=sample`, through Hydra when the whole tree composes."""
    try:
        from hydra import compose, initialize_config_dir

        from medft.config import register_schemas

        register_schemas()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose("train", overrides=["data=sample"]).data
    except Exception:  # other config groups still missing: the data group alone is enough here
        return yaml_cfg("sample")


@pytest.fixture(scope="module")
def sample():
    return load_datasets(compose_sample(), progress=False)


# --------------------------------------------------------------------------- contract
def test_sample_config_loads_three_splits_with_the_record_contract(sample):
    ds, report = sample
    assert list(ds.keys()) == ["train", "validation", "test"]
    json.dumps(report)  # serialisable as data_report.json
    ids = set()
    for split in SPLITS:
        assert len(ds[split]) > 0
        for row in ds[split]:
            assert isinstance(row["id"], str) and row["id"] and row["id"] not in ids
            ids.add(row["id"])
            roles = [m["role"] for m in row["messages"]]
            assert set(roles) <= set(ROLES) and roles[-1] == "assistant" and "user" in roles
            for m in row["messages"]:
                assert m["content"].strip() and unicodedata.is_normalized("NFC", m["content"])
            assert row["meta"]["source"] in {"aihub", "pubmedqa_ko", "hira"}
            assert all(v is None or isinstance(v, str) for v in row["meta"].values())
    for name in ("aihub", "pubmedqa_ko", "hira"):
        src = report["sources"][name]
        assert src["read"] > 0 and src["kept"] > 0 and src["skipped_total"] == 0
        assert sum(src["splits"].values()) > 0
    assert report["sources"]["pubmedqa_ko"]["carved_from"] == "test"
    assert report["splits"] == {s: len(ds[s]) for s in SPLITS}


def test_meta_keys_identical_across_rows_and_splits(sample):
    ds, report = sample
    keys = set(report["meta_keys"])
    assert {"source", "category", "intention", "final_decision"} <= keys
    for split in SPLITS:
        assert set(ds[split].features["meta"]) == keys
        assert all(set(row["meta"]) == keys for row in ds[split])


def test_no_question_appears_in_two_splits(sample):
    ds, report = sample
    seen = {}
    for split in SPLITS:
        for row in ds[split]:
            key = question_key(row)
            assert seen.setdefault(key, split) == split, row["id"]
    assert report["leakage"]["questions_in_several_splits"] == 0


def test_importing_the_data_layer_is_light():
    code = "import sys, medft.data; bad = {'datasets', 'torch', 'transformers'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- AI Hub
def test_sample_has_comma_intention_and_bom_files(sample):
    ds, _ = sample
    rows = [r for s in SPLITS for r in ds[s] if r["meta"]["source"] == "aihub"]
    comma = [r for r in rows if r["meta"]["intention"] == "식이, 생활"]
    assert comma and all("/식이, 생활/" in r["id"] for r in comma)
    bom_questions = [p for p in SAMPLE_AIHUB.rglob("HC-Q-*.json") if p.read_bytes().startswith(b"\xef\xbb\xbf")]
    assert bom_questions
    ids = {r["id"].rsplit("/", 1)[-1] for r in rows}
    assert {p.stem for p in bom_questions} <= ids


@pytest.mark.parametrize(
    ("policy", "cap", "pairs", "answers_used"),
    [("first", 3, 5, 2), ("random", 3, 5, None), ("all", 3, 8, 3), ("all", 1, 5, 3)],
)
def test_aihub_pairing_policies(tmp_path, policy, cap, pairs, answers_used):
    root = pairing_tree(tmp_path / "aihub")
    splits, report = collect_records(
        data_cfg({"aihub": {"kind": "aihub", "path": str(root), "pairing": policy, "pairing_cap": cap}}), progress=False
    )
    info = report.sources["aihub"].info["pairing"]
    assert info["pairs"] == pairs == len(all_records(splits))
    assert info["questions_paired"] == 5 and info["answers"] == 3
    if answers_used is not None:
        assert info["answers_used"] == answers_used
    assert info["answers_unused"] == 3 - info["answers_used"]
    if policy == "all":
        assert all(r["id"].count("HC-A-") == 1 for r in all_records(splits))


def test_aihub_random_pairing_is_seeded(tmp_path):
    root = tmp_path / "aihub"
    for i in range(12):
        question(root, G1, f"HC-Q-00000{i:02d}", f"질문 {i}")
    for i in range(6):
        answer(root, G1, f"HC-A-000000{i:02d}", f"답변 {i}")

    def answers(seed):
        cfg = data_cfg({"aihub": {"kind": "aihub", "path": str(root), "pairing": "random"}}, seed=seed)
        return {r["id"]: r["meta"]["answer_file"] for r in all_records(collect_records(cfg, progress=False)[0])}

    assert answers(1) == answers(1)
    assert answers(1) != answers(2)


def test_aihub_pairs_never_cross_groups_or_splits():
    cfg = data_cfg({"aihub": {"kind": "aihub", "path": str(SAMPLE_AIHUB), "pairing": "all", "pairing_cap": 3}})
    splits, report = collect_records(cfg, progress=False)
    assert report.sources["aihub"].info["pairing"]["pairs"] > report.sources["aihub"].info["pairing"]["questions"]
    for record in all_records(splits):
        q = Path(record["meta"]["question_file"])
        a = Path(record["meta"]["answer_file"])
        assert q.parts[0] == a.parts[0]  # TL with TL, VL with VL
        assert q.parent.parts[-3:] == a.parent.parts[-3:]  # same category/disease/intention
        assert q.parent.parts[-3:] == (
            record["meta"]["category"],
            record["meta"]["disease"],
            record["meta"]["intention"],
        )


def test_aihub_reads_bom_files_and_joins_answer_parts(tmp_path):
    root = tmp_path / "aihub"
    for i in range(3):
        question(root, G1, f"HC-Q-000000{i}", f"짜게 먹으면 혈압이 오르나요 {i}?", bom=True)
    answer(root, G1, "HC-A-00000001", "소금은 혈압을 올립니다.", intro="네, 그렇습니다.", bom=True)
    splits, report = collect_records(data_cfg({"aihub": {"kind": "aihub", "path": str(root)}}), progress=False)
    records = all_records(splits)
    assert len(records) == 3 and report.sources["aihub"].skipped_total == 0
    assert records[0]["messages"][-1]["content"] == "네, 그렇습니다. 소금은 혈압을 올립니다."
    assert records[0]["meta"]["department"] == "내과, 가정의학과"
    assert records[0]["meta"]["disease_eng"] == "Disease"


def test_aihub_official_split_folders_map_to_train_and_validation(tmp_path):
    root = tmp_path / "71762"
    tl = root / "Training" / "02.라벨링데이터" / "TL"
    vl = root / "Validation" / "02.라벨링데이터" / "VL"
    for i in range(6):
        question(tl, G1, f"HC-Q-000000{i}", f"훈련 질문 {i}")
    answer(tl, G1, "HC-A-00000001", "훈련 답변")
    for i in range(2):
        question(vl, G1, f"HC-Q-900000{i}", f"검증 질문 {i}")
    answer(vl, G1, "HC-A-90000001", "검증 답변")
    splits, report = collect_records(data_cfg({"aihub": {"kind": "aihub", "path": str(root)}}), progress=False)
    assert {r["meta"]["source_split"] for r in splits["validation"]} == {"VL"}
    assert len(splits["validation"]) == 2
    assert {r["meta"]["source_split"] for r in splits["train"] + splits["test"]} == {"TL"}
    assert all(r["id"].startswith("aihub/TL/") for r in splits["train"])
    assert all(r["meta"]["answer_file"].startswith("Validation/") for r in splits["validation"])
    assert report.sources["aihub"].info["carved_from"] == "train"
    assert list(report.sources["aihub"].info["carved"]) == ["test"]


def test_aihub_without_split_folders_is_all_train_then_carved_by_folder(tmp_path):
    root = pairing_tree(tmp_path / "flat")
    for intention in ("운동", "원인", "증상"):
        group = ("순환기질환", "고혈압", intention)
        for i in range(2):
            question(root, group, f"HC-Q-{intention}{i}", f"고혈압 {intention} 질문 {i}")
        answer(root, group, f"HC-A-{intention}", f"고혈압 {intention} 답변")
    splits, report = collect_records(data_cfg({"aihub": {"kind": "aihub", "path": str(root)}}), progress=False)
    assert {r["meta"]["source_split"] for r in all_records(splits)} == {"TL"}
    assert all(len(splits[s]) >= 1 for s in SPLITS)
    home = {}
    for split in SPLITS:
        for r in splits[split]:
            assert home.setdefault(r["meta"]["intention"], split) == split, r["id"]  # a folder stays whole
    info = report.sources["aihub"].info
    assert info["carved_groups"] == {"validation": 1, "test": 1}
    assert info["carved"] == {"validation": len(splits["validation"]), "test": len(splits["test"])}
    assert info["groups"]["count"] == 5 and info["grouped_by"][-3:] == ["category", "disease", "intention"]


def test_aihub_nfd_folder_names_become_nfc(tmp_path):
    root = tmp_path / "aihub"
    nfd = tuple(unicodedata.normalize("NFD", part) for part in G1)
    for i in range(3):
        question(root, nfd, f"HC-Q-000000{i}", unicodedata.normalize("NFD", f"혈압 질문 {i}"))
    answer(root, nfd, "HC-A-00000001", "혈압 답변")
    splits, _ = collect_records(data_cfg({"aihub": {"kind": "aihub", "path": str(root)}}), progress=False)
    for record in all_records(splits):
        assert record["meta"]["intention"] == "식이, 생활"
        assert unicodedata.is_normalized("NFC", record["id"])
        assert unicodedata.is_normalized("NFC", record["messages"][0]["content"])


def test_aihub_skips_are_counted_with_reasons_and_paths(tmp_path):
    root = pairing_tree(tmp_path / "aihub")
    broken = root / "1.질문" / G1[0] / G1[1] / G1[2] / "HC-Q-9999999.json"
    broken.write_text("{not json", encoding="utf-8")
    answer(root, G2, "HC-A-19999999", "")  # empty text
    lonely = ("순환기질환", "고혈압", "운동")
    question(root, lonely, "HC-Q-5555555", "운동해도 되나요?")  # no answer in its group
    write_json(root / "1.질문" / "순환기질환" / "고혈압" / "HC-Q-4444444.json", {"question": "층이 모자란 질문"})
    splits, report = collect_records(
        data_cfg({"aihub": {"kind": "aihub", "path": str(root)}}, max_skip_ratio=1.0), progress=False
    )
    src = report.to_dict()["sources"]["aihub"]
    assert src["read"] == 12 and src["kept"] == 5 == len(all_records(splits))
    skipped = src["skipped"]
    assert skipped["question_invalid_json"]["examples"] == ["1.질문/순환기질환/고혈압/식이, 생활/HC-Q-9999999.json"]
    assert skipped["empty_answer"]["count"] == 1
    assert skipped["question_without_answer_in_group"]["examples"][0].endswith("운동/HC-Q-5555555.json")
    assert skipped["question_outside_category_disease_intention"]["count"] == 1
    assert src["skipped_total"] == 4


def test_aihub_missing_path_names_the_key_and_the_source():
    with pytest.raises(DataError) as err:
        collect_records(yaml_cfg("aihub"), progress=False)
    message = str(err.value)
    assert "data.sources.aihub.path" in message and "71762" in message and "\n" not in message


def test_aihub_folder_without_questions_is_an_error(tmp_path):
    (tmp_path / "TL.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"1\.질문.*TL\.zip"):
        collect_records(data_cfg({"aihub": {"kind": "aihub", "path": str(tmp_path)}}), progress=False)


# --------------------------------------------------------------------------- PubMedQA-Ko
def pubmed_rows(n: int) -> list[dict]:
    decisions = ["yes", "no", "maybe"]
    return [
        {
            "QUESTION": f"질문 {i}은 효과가 있는가?",
            "CONTEXTS": [f"배경 {i}.", f"결과 {i}."],
            "LONG_ANSWER": f"결론 {i}.",
            "final_decision": decisions[i % 3],
            "YEAR": "2020",
        }
        for i in range(n)
    ]


def test_pubmedqa_missing_column_error_names_it(tmp_path):
    rows = pubmed_rows(5)
    for row in rows:
        del row["LONG_ANSWER"]
    path = write_json(tmp_path / "pubmedqa.json", rows)
    with pytest.raises(DataError, match="LONG_ANSWER") as err:
        collect_records(data_cfg({"p": {"kind": "pubmedqa_ko", "path": str(path)}}), progress=False)
    assert "QUESTION" not in str(err.value).split("need")[0]


def test_pubmedqa_list_file_is_carved_stratified_from_test(tmp_path):
    path = write_json(tmp_path / "pubmedqa.json", pubmed_rows(30))
    splits, report = collect_records(data_cfg({"p": {"kind": "pubmedqa_ko", "path": str(path)}}), progress=False)
    info = report.sources["p"].info
    assert info["carved_from"] == "test" and info["stratified_by"] == ["final_decision"]
    assert [len(splits[s]) for s in SPLITS] == [24, 3, 3]
    assert {r["meta"]["final_decision"] for r in splits["test"]} == {"yes", "no", "maybe"}
    user = splits["train"][0]["messages"][0]["content"]
    assert user.startswith("질문: ") and "\n\n근거:\n" in user


def test_pubmedqa_sample_meta_has_pmid_and_year(sample):
    ds, _ = sample
    row = next(r for r in ds["train"] if r["meta"]["source"] == "pubmedqa_ko")
    assert row["meta"]["pmid"] and row["id"] == f"pubmedqa_ko/{row['meta']['pmid']}"
    assert row["meta"]["year"] and row["meta"]["final_decision"] in {"yes", "no", "maybe"}


# --------------------------------------------------------------------------- HIRA
def hira_line(i: int, **extra) -> str:
    row = {
        "instruction": f"본인부담 질문 {i}",
        "input": "",
        "output": f"답변 {i}",
        "metadata": {"category": "본인부담"},
    }
    row.update(extra)
    return json.dumps(row, ensure_ascii=False)


def test_hira_bad_lines_are_counted_with_file_and_line(tmp_path):
    lines = [hira_line(i) for i in range(20)]
    lines[2] = "{broken"
    lines[3] = hira_line(3, output="")
    lines.insert(5, "")  # blank lines are not records
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits, report = collect_records(
        data_cfg({"hira": {"kind": "hira", "path": str(tmp_path)}}, max_skip_ratio=0.5), progress=False
    )
    src = report.to_dict()["sources"]["hira"]
    assert src["skipped"]["invalid_json"]["examples"] == ["train.jsonl:3"]
    assert src["skipped"]["missing_output"]["examples"] == ["train.jsonl:4"]
    assert src["read"] == 20 and src["kept"] == 18
    assert src["carved_from"] == "train"
    assert all(len(splits[s]) >= 1 for s in SPLITS)


def test_hira_metadata_is_flattened_to_strings(tmp_path):
    meta = {"category": "진료비통계", "source": "sample", "year": 2022, "table": {"sno": 13200}}
    lines = [hira_line(i, input=f"환자수: {i}명", metadata=meta) for i in range(4)]
    (tmp_path / "train.jsonl").write_text("\n".join(lines), encoding="utf-8")
    splits, _ = collect_records(data_cfg({"hira": {"kind": "hira", "path": str(tmp_path)}}), progress=False)
    record = all_records(splits)[0]
    assert record["meta"]["source"] == "hira" and record["meta"]["metadata_source"] == "sample"
    assert record["meta"]["year"] == "2022" and record["meta"]["table_sno"] == "13200"
    assert re.fullmatch(r"본인부담 질문 (\d)\n\n환자수: \1명", record["messages"][0]["content"])


def test_skip_ratio_failure_is_one_line_naming_the_setting(tmp_path):
    lines = [hira_line(i) for i in range(10)] + ["not json"] * 2
    (tmp_path / "train.jsonl").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError) as err:
        collect_records(data_cfg({"hira": {"kind": "hira", "path": str(tmp_path)}}), progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "data.max_skip_ratio" in message and "'hira'" in message and "16.7%" in message
    assert err.value.report["sources"]["hira"]["skipped"]["invalid_json"]["count"] == 2


def test_hira_missing_path_names_the_key_and_layout():
    with pytest.raises(DataError) as err:
        collect_records(yaml_cfg("hira"), progress=False)
    assert "data.sources.hira.path" in str(err.value) and "train.jsonl" in str(err.value)


# --------------------------------------------------------------------------- splits
def split_ids(seed: int) -> dict[str, list[str]]:
    splits, _ = collect_records(yaml_cfg("sample", seed=seed), progress=False)
    return {s: [r["id"] for r in splits[s]] for s in SPLITS}


def test_splits_are_deterministic_per_seed():
    first, again, other = split_ids(42), split_ids(42), split_ids(7)
    assert first == again
    assert set(first["test"]) != set(other["test"])
    assert sorted(sum(first.values(), [])) == sorted(sum(other.values(), []))


def _leaky_hira(tmp_path):
    train = [hira_line(i) for i in range(10)]
    train.append(
        json.dumps(
            {"instruction": "본인부담상한제란?", "input": "", "output": "훈련 답", "metadata": {}}, ensure_ascii=False
        )
    )
    test = [
        json.dumps(
            {"instruction": "본인부담 상한제란 ", "input": "", "output": "평가 답", "metadata": {}}, ensure_ascii=False
        )
    ]
    test.append(hira_line(100))
    (tmp_path / "train.jsonl").write_text("\n".join(train), encoding="utf-8")
    (tmp_path / "test.jsonl").write_text("\n".join(test), encoding="utf-8")
    (tmp_path / "val.jsonl").write_text(hira_line(200), encoding="utf-8")


def test_leaked_question_fails_the_run_unless_allowed(tmp_path):
    _leaky_hira(tmp_path)
    with pytest.raises(
        DataError, match=r"^1 questions appear in more than one split \(e\.g\. hira/train/11.*data\.allow_leakage=true"
    ):
        collect_records(data_cfg({"hira": {"kind": "hira", "path": str(tmp_path)}}), progress=False)


def test_allowed_leak_is_dropped_from_train_and_reported(tmp_path):
    _leaky_hira(tmp_path)
    cfg = data_cfg({"hira": {"kind": "hira", "path": str(tmp_path)}}, allow_leakage=True)
    splits, report = collect_records(cfg, progress=False)
    assert report.leakage["questions_in_several_splits"] == 1
    assert report.leakage["dropped"] == {"train": 1}
    assert "hira/train/11" in report.leakage["examples"][0]
    keys = {s: {question_key(r) for r in splits[s]} for s in SPLITS}
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["validation"])
    assert any(r["messages"][-1]["content"] == "평가 답" for r in splits["test"])


def test_tiny_source_still_fills_every_split(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n".join(hira_line(i) for i in range(3)), encoding="utf-8")
    splits, _ = collect_records(data_cfg({"hira": {"kind": "hira", "path": str(tmp_path)}}), progress=False)
    assert [len(splits[s]) for s in SPLITS] == [1, 1, 1]


def test_max_records_and_system_prompt(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n".join(hira_line(i) for i in range(40)), encoding="utf-8")
    cfg = data_cfg(
        {"hira": {"kind": "hira", "path": str(tmp_path), "max_records": 5}},
        system_prompt="당신은 건강보험 상담원입니다.",
    )
    splits, report = collect_records(cfg, progress=False)
    assert len(splits["train"]) == 5
    assert report.sources["hira"].info["max_records"] == {"limit": 5, "dropped_from_train": 27}
    assert all(
        r["messages"][0] == {"role": "system", "content": "당신은 건강보험 상담원입니다."} for r in all_records(splits)
    )


def test_aihub_archive_unzipped_twice_is_ignored_not_skipped(tmp_path):
    root = tmp_path / "71762"
    labels = root / "Validation" / "02.라벨링데이터"
    for base in (labels, labels / "VL"):  # flattened copy next to the VL/ copy
        for i in range(3):
            question(base, G1, f"HC-Q-000000{i}", f"검증 질문 {i}")
        answer(base, G1, "HC-A-00000001", "검증 답변")
    (labels / "VL" / "1.질문" / "readme.txt").write_text("not data", encoding="utf-8")
    splits, report = collect_records(data_cfg({"aihub": {"kind": "aihub", "path": str(root)}}), progress=False)
    src = report.to_dict()["sources"]["aihub"]
    assert src["read"] == 4 and src["skipped_total"] == 0
    assert src["ignored"]["duplicate_question_file"]["count"] == 3
    assert src["ignored"]["duplicate_answer_file"]["count"] == 1
    assert src["ignored"]["not_a_json_file"]["count"] == 1
    assert {r["meta"]["source_split"] for r in all_records(splits)} == {"VL"}


def test_aihub_path_at_a_question_folder_is_an_error(tmp_path):
    pairing_tree(tmp_path)
    with pytest.raises(DataError, match="holds both 1.질문 and 2.답변"):
        collect_records(data_cfg({"aihub": {"kind": "aihub", "path": str(tmp_path / "1.질문")}}), progress=False)


def test_pubmedqa_from_the_hub_checks_columns(monkeypatch):
    import datasets

    calls = []

    def fake_load(hub_id, revision=None, split=None):
        calls.append((hub_id, revision, split))
        rows = pubmed_rows(9)
        if revision == "broken":
            for row in rows:
                del row["final_decision"]
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    cfg = yaml_cfg("pubmedqa_ko")
    splits, report = collect_records(cfg, progress=False)
    assert calls == [("ChuGyouk/PubMedQA-test-Ko", None, "test")]
    assert report.sources["pubmedqa_ko"].info["carved_from"] == "test"
    assert all(r["id"].startswith("pubmedqa_ko/0000") for r in all_records(splits))
    with pytest.raises(DataError, match="final_decision"):
        collect_records(yaml_cfg("pubmedqa_ko", sources={"pubmedqa_ko": {"revision": "broken"}}), progress=False)


def test_pubmedqa_hub_failure_is_one_line_pointing_at_a_local_copy(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        collect_records(yaml_cfg("pubmedqa_ko"), progress=False)
    assert "\n" not in str(err.value) and "data.sources.pubmedqa_ko.path" in str(err.value)
