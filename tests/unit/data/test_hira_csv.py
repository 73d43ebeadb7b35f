"""HIRA statistics tables -> numeric question/answer records -> HIRA JSONL, with every number checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from medft.config import SAMPLES_DIR
from medft.data.report import SourceReport
from medft.data.sources import hira, hira_csv
from medft.data.splits import SPLITS, carve
from medft.runtime.errors import DataError

SAMPLE = SAMPLES_DIR / "hira_csv"
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")

TEMPLATES = """
tables:
  - name: 상병_성별
    match: {glob: "*상병*.csv"}
    dimensions: [진료년도, 주상병코드, 주상병명, 성별구분]
    measures:
      환자수:
        questions:
          - "{진료년도}년 {주상병명}({주상병코드}) {성별구분} 환자 수는 몇 명인가요?"
          - "{진료년도}년 {주상병명}({주상병코드}) 상병의 {성별구분} 환자는 몇 명이었나요?"
          - "{주상병명}({주상병코드}) {성별구분} 환자 수를 {진료년도}년 기준으로 알려 주세요."
        answer: "{진료년도}년 {주상병명}({주상병코드}) {성별구분} 환자 수는 {환자수:,}명입니다."
      요양급여비용총액:
        column: 요양급여비용총액(선별포함)
        questions:
          - "{진료년도}년 {주상병명}({주상병코드}) {성별구분} 요양급여비용 총액은 얼마인가요?"
          - "{주상병명}({주상병코드}) {성별구분} 진료의 {진료년도}년 요양급여비용총액을 알려 주세요."
        answer: "{진료년도}년 {주상병명}({주상병코드}) {성별구분} 요양급여비용총액은 {value:,}원입니다."
      1인당요양급여비용:
        derive: {op: divide, columns: [요양급여비용총액(선별포함), 환자수], round: 0}
        questions:
          - "{진료년도}년 {주상병명}({주상병코드}) {성별구분} 환자 1인당 요양급여비용은 얼마인가요?"
        answer: "{진료년도}년 {주상병명}({주상병코드}) {성별구분} 환자 1인당 요양급여비용은 약 {value:,}원입니다."
"""

HEADER = "진료년도,주상병코드,주상병명,성별구분,환자수,요양급여비용총액(선별포함)"
# (code, name, sex, patients cell, cost cell): quoted separators, spaces, blanks, '-'.
ROWS = [
    ("J20", "급성 기관지염", "남성", '"4,265,288"', '"482,718,156,408"'),
    ("J20", "급성 기관지염", "여성", " 4391061 ", '" 310,531,648,002 "'),
    ("I10", "본태성(원발성) 고혈압", "남성", '"3,236,588"', ""),
    ("I10", "본태성(원발성) 고혈압", "여성", "-", '"224,008,570,608"'),
    ("E11", "2형 당뇨병", "남성", "1702566 ", "265997423043"),
    ("E11", "2형 당뇨병", "여성", '"1,578,211"', '"170,804,020,191"'),
]


def cell_value(cell: str) -> int | None:
    """The test's own reading of a cell, independent of the loader."""
    text = cell.strip().strip('"').replace(",", "").strip()
    return None if text in ("", "-") else int(text)


def table_text(rows=ROWS, header=HEADER, year: int = 2023) -> str:
    lines = [header]
    for code, name, sex, patients, cost in rows:
        quoted = f'"{name}"' if "(" in name else name
        lines.append(f"{year},{code},{quoted},{sex},{patients},{cost}")
    return "\r\n".join(lines) + "\r\n"


def write(path: Path, text: str, encoding: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def templates(tmp_path) -> Path:
    path = tmp_path / "templates.yaml"
    path.write_text(TEMPLATES, encoding="utf-8")
    return path


def run(path: Path, templates: Path | None = None, *, seed: int = 42, **src) -> tuple[list[dict], SourceReport]:
    report = SourceReport(name="hira_csv", kind="hira_csv", path=str(path))
    config = {"path": str(path), "templates": str(templates) if templates else None, "phrasings": 2, **src}
    out = hira_csv.load("hira_csv", config, seed=seed, report=report, progress=False)
    assert set(out) == {"train"}
    return out["train"], report


def last_number(text: str) -> Decimal:
    return Decimal(NUMBER.findall(text)[-1].replace(",", ""))


# --------------------------------------------------------------------------- round trip
def test_cp949_table_round_trips_into_hira_jsonl_with_the_tables_numbers(tmp_path, templates):
    tables = tmp_path / "tables"
    write(tables / "3단상병별_성별_통계_2023.csv", table_text(), "cp949")
    records, report = run(tables, templates)
    assert report.info["encodings"] == {"3단상병별_성별_통계_2023.csv": "cp949"}

    splits, _ = carve({"train": records}, validation_ratio=0.2, test_ratio=0.2, seed=1, stratify=hira_csv.STRATIFY)
    out = tmp_path / "jsonl"
    paths = hira_csv.write_jsonl(splits, out)
    assert {p.name for p in paths.values()} == {"train.jsonl", "val.jsonl", "test.jsonl"}
    back_report = SourceReport(name="hira", kind="hira", path=str(out))
    back = hira.load("hira", {"path": str(out)}, seed=0, report=back_report, progress=False)
    assert back_report.skipped_total == 0
    rows = [r for split in back.values() for r in split]
    assert len(rows) == len(records)

    checked = {"환자수": 0, "요양급여비용총액": 0, "1인당요양급여비용": 0}
    for record in rows:
        meta = record["meta"]
        code, name, sex, patients, cost = ROWS[int(meta["row"]) - 1]
        answer = record["messages"][-1]["content"]
        assert f"{name}({code}) {sex}" in answer and meta["year"] == "2023" and meta["encoding"] == "cp949"
        expected = {
            "환자수": cell_value(patients),
            "요양급여비용총액": cell_value(cost),
        }
        if meta["measure"] == "1인당요양급여비용":
            per_head = Decimal(cell_value(cost)) / Decimal(cell_value(patients))
            assert abs(last_number(answer) - per_head) <= Decimal("0.5")
        else:
            assert last_number(answer) == expected[meta["measure"]]
            assert f"{expected[meta['measure']]:,}" in answer  # read naturally: 4,265,288
        checked[meta["measure"]] += 1
    assert all(checked.values()), checked
    # Rows 3 (blank cost) and 4 ('-' patients) lose only the items that need those cells.
    assert report.skipped["missing_value"] == 4
    assert report.read == len(ROWS) * 3
    assert {r["meta"]["row"] for r in records if r["meta"]["measure"] == "환자수"} == {"1", "2", "3", "5", "6"}


def test_record_ids_meta_and_phrasing_count(tmp_path, templates):
    write(tmp_path / "상병_2023.csv", table_text(), "utf-8-sig")
    records, _ = run(tmp_path, templates)
    first = [r for r in records if r["meta"]["row"] == "1" and r["meta"]["measure"] == "환자수"]
    assert len(first) == 2  # phrasings: 2
    assert all(re.fullmatch(r"hira_csv/상병_2023/1/환자수/[123]", r["id"]) for r in first)
    assert len({r["messages"][0]["content"] for r in first}) == 2
    assert len({r["messages"][1]["content"] for r in first}) == 1
    meta = first[0]["meta"]
    assert {k: meta[k] for k in ("source", "file", "row", "year", "table", "measure", "encoding")} == {
        "source": "hira_csv",
        "file": "상병_2023.csv",
        "row": "1",
        "year": "2023",
        "table": "상병_성별",
        "measure": "환자수",
        "encoding": "utf-8-sig",
    }
    # A measure with one phrasing gives one question however many are asked for.
    assert sum(r["meta"]["measure"] == "1인당요양급여비용" and r["meta"]["row"] == "1" for r in records) == 1


# --------------------------------------------------------------------------- encodings
def test_encoding_detection_utf8_sig_cp949_euc_kr(tmp_path, templates):
    text = table_text()
    assert hira_csv.decode(text.encode("utf-8-sig")) == (text.removeprefix("\ufeff"), "utf-8-sig")
    assert hira_csv.decode(text.encode("cp949")) == (text, "cp949")
    # EUC-KR is a subset of CP949: the same text comes back, named by the superset tried first.
    assert hira_csv.decode(text.encode("euc-kr")) == (text, "cp949")
    only_cp949 = "똠방각하".encode("cp949")  # a syllable outside KS X 1001: CP949's extension
    with pytest.raises(UnicodeDecodeError):
        only_cp949.decode("euc-kr")
    assert hira_csv.decode(only_cp949) == ("똠방각하", "cp949")
    assert hira_csv.decode(b"\xff\x80\xff") is None

    write(tmp_path / "a_상병_2023.csv", text, "utf-8-sig")
    write(tmp_path / "b_상병_2022.csv", table_text(ROWS[:3], year=2022), "cp949")
    write(tmp_path / "c_상병_2021.csv", table_text(ROWS[3:], year=2021), "euc-kr")
    (tmp_path / "d_상병_2023.csv").write_bytes(b"\xff\xfe\x80" * 10)
    records, report = run(tmp_path, templates)
    assert report.info["encodings"] == {
        "a_상병_2023.csv": "utf-8-sig",
        "b_상병_2022.csv": "cp949",
        "c_상병_2021.csv": "cp949",
    }
    assert report.skipped["undecodable_file"] == 1
    assert "d_상병_2023.csv" in report.examples["undecodable_file"][0]
    assert {r["meta"]["encoding"] for r in records} == {"utf-8-sig", "cp949"}
    assert {r["meta"]["year"] for r in records} == {"2021", "2022", "2023"}
    # The same table again (another encoding, same text) is one table, not twice the data.
    write(tmp_path / "e_상병_2023.csv", text, "cp949")
    same, again = run(tmp_path, templates)
    assert again.ignored["duplicate_file"] == 1 and len(same) == len(records)

    # An explicit encoding is used as given (and reported as such).
    forced_dir = tmp_path / "forced"
    write(forced_dir / "상병_2023.csv", table_text(ROWS[:2]), "euc-kr")
    records, report = run(forced_dir, templates, encoding="euc-kr")
    assert report.info["encodings"] == {"상병_2023.csv": "euc-kr"} and records
    with pytest.raises(DataError, match=r"data\.sources\.hira_csv\.encoding"):
        run(forced_dir, templates, encoding="klingon-8")


def test_a_folder_that_decodes_with_nothing_names_the_encoding_key(tmp_path, templates):
    (tmp_path / "상병_2023.csv").write_bytes(b"\xff\x80" * 20)
    with pytest.raises(DataError, match=r"data\.sources\.hira_csv\.encoding"):
        run(tmp_path, templates)


# --------------------------------------------------------------------------- bad cells
def test_missing_values_and_bad_numbers_are_counted_with_file_and_row(tmp_path, templates):
    rows = [
        ("J20", "급성 기관지염", "남성", '"1,000"', '"2,000,000"'),
        ("J20", "급성 기관지염", "여성", "약 300", '"1,000,000"'),  # bad_number in 환자수
        ("I10", "고혈압", "남성", "", '"3,000,000"'),  # missing 환자수
        ("I10", "고혈압", "여성", "500", "n/a"),  # bad_number in cost
        ("E11", "", "남성", "100", "200"),  # missing dimension: whole row
        ("E11", "2형 당뇨병", "여성", "1,234", "200"),  # unquoted separator: one cell too many
    ]
    write(tmp_path / "상병_2023.csv", table_text(rows), "cp949")
    records, report = run(tmp_path, templates)
    assert report.read == len(rows) * 3
    # Row 2: 환자수 and the per-head cost need it; row 4: cost and per-head cost.
    assert report.skipped["bad_number"] == 4
    assert report.skipped["missing_value"] == 2 + 3
    assert report.skipped["ragged_row"] == 3 and report.examples["ragged_row"][0].startswith("상병_2023.csv:6 ")
    assert all(e.startswith("상병_2023.csv:") for e in report.examples["bad_number"])
    assert report.examples["bad_number"][0].startswith("상병_2023.csv:2 ")
    assert any(e.startswith("상병_2023.csv:3 ") for e in report.examples["missing_value"])
    kept_items = {(r["meta"]["row"], r["meta"]["measure"]) for r in records}
    assert kept_items == {
        ("1", "환자수"),
        ("1", "요양급여비용총액"),
        ("1", "1인당요양급여비용"),
        ("2", "요양급여비용총액"),
        ("3", "요양급여비용총액"),
        ("4", "환자수"),
    }
    assert report.read == report.skipped_total + len(kept_items)


def test_parse_number():
    assert hira_csv.parse_number(" 1,234,567 ") == 1234567
    assert hira_csv.parse_number("12.50") == Decimal("12.50")
    assert hira_csv.parse_number("-") is None and hira_csv.parse_number("  ") is None
    with pytest.raises(ValueError):
        hira_csv.parse_number("1.2.3")


def test_same_question_with_another_answer_is_skipped_as_ambiguous(tmp_path, templates):
    rows = [ROWS[0], (*ROWS[0][:3], '"9"', '"9"')]
    write(tmp_path / "상병_2023.csv", table_text(rows), "utf-8-sig")
    records, report = run(tmp_path, templates)
    assert report.skipped["ambiguous_question"] == 3
    assert {r["meta"]["row"] for r in records} == {"1"}
    # An exact repeat of a row says nothing new: ignored, not counted against the skip ratio.
    write(tmp_path / "상병_2023.csv", table_text([ROWS[0], ROWS[0]]), "utf-8-sig")
    records, report = run(tmp_path / "상병_2023.csv", templates)  # one file instead of a folder
    assert report.ignored["duplicate_question"] == 3 and report.skipped_total == 0
    assert {r["meta"]["row"] for r in records} == {"1"}


# --------------------------------------------------------------------------- determinism
def test_phrasings_are_deterministic_for_a_seed(tmp_path, templates):
    write(tmp_path / "상병_2023.csv", table_text(), "cp949")
    first, _ = run(tmp_path, templates, seed=7)
    again, _ = run(tmp_path, templates, seed=7)
    assert [(r["id"], r["messages"]) for r in first] == [(r["id"], r["messages"]) for r in again]
    picks = {seed: {r["id"] for r in run(tmp_path, templates, seed=seed)[0]} for seed in range(6)}
    assert len({frozenset(v) for v in picks.values()}) > 1  # the seed does choose among phrasings


# --------------------------------------------------------------------------- templates
def test_tables_without_a_template_are_ignored_not_errors(tmp_path, templates):
    write(tmp_path / "상병_2023.csv", table_text(), "cp949")
    write(tmp_path / "약국_현황_2023.csv", "시도,약국수\r\n서울,5000\r\n", "cp949")
    (tmp_path / "readme.txt").write_text("not a table", encoding="utf-8")
    records, report = run(tmp_path, templates)
    assert records
    assert report.ignored["no_template"] == 1 and report.ignored_examples["no_template"] == ["약국_현황_2023.csv"]
    assert report.ignored["not_csv"] == 1
    assert report.skipped_total == 4  # only the sample's own blanks


def test_no_matching_table_at_all_is_one_line_naming_templates(tmp_path, templates):
    write(tmp_path / "약국_현황_2023.csv", "시도,약국수\r\n서울,5000\r\n", "cp949")
    with pytest.raises(DataError, match=r"data\.sources\.hira_csv\.templates") as err:
        run(tmp_path, templates)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("tables: []", "tables"),
        ("tables: [{name: x, dimensions: [a], measures: {a: {questions: [q], answer: y}}}]", "match"),
        ("tables: [{match: {glob: '*'}, measures: {a: {answer: y}}}]", "questions"),
        ("tables: [{match: {glob: '*'}, measures: {a: {questions: ['{b'], answer: y}}}]", "measures.a"),
        ("tables: [{match: {glob: '*'}, measures: {a: {questions: [q], answer: y, derive: {op: pow}}}}]", "derive"),
        ("tables: [: bad", "YAML"),
    ],
)
def test_bad_templates_fail_in_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    write(tmp_path / "data" / "상병_2023.csv", table_text(), "cp949")
    with pytest.raises(DataError, match=r"data\.sources\.hira_csv\.templates") as err:
        run(tmp_path / "data", path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_settings_errors_name_their_keys(tmp_path, templates):
    with pytest.raises(DataError, match=r"data\.sources\.hira_csv\.path"):
        run(tmp_path / "nowhere", templates)
    write(tmp_path / "상병_2023.csv", table_text(), "cp949")
    with pytest.raises(DataError, match=r"data\.sources\.hira_csv\.phrasings"):
        run(tmp_path, templates, phrasings=0)


def test_template_that_formats_text_as_a_number_names_the_measure(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(
        "tables: [{match: {glob: '*.csv'}, measures: {환자수: {questions: ['{주상병명:,}?'], answer: '{value:,}'}}}]",
        encoding="utf-8",
    )
    write(tmp_path / "data" / "상병_2023.csv", table_text(), "cp949")
    with pytest.raises(DataError, match="환자수"):
        run(tmp_path / "data", path)


# --------------------------------------------------------------------------- shipped samples
def test_shipped_samples_cover_both_encodings_and_messy_numbers():
    files = sorted(SAMPLE.glob("*.csv"))
    assert 2 <= len(files) <= 3
    raw = {p.name: p.read_bytes() for p in files}
    assert any(b.startswith(b"\xef\xbb\xbf") for b in raw.values())
    cp949 = [b for b in raw.values() if not b.startswith(b"\xef\xbb\xbf")]
    assert cp949 and all(hira_csv.decode(b)[1] == "cp949" for b in cp949)
    text = "".join(hira_csv.decode(b)[0] for b in raw.values())
    assert re.search(r'"\s*\d{1,3}(,\d{3}){2,}\s*"', text)  # quoted thousands separators
    assert re.search(r'" \d', text) and re.search(r",,|,-,|,-\r?\n|, ,", text)  # spaces, blanks


def test_shipped_config_composes_and_loads_into_three_splits_with_table_numbers():
    from hydra import compose, initialize_config_dir

    from medft.config import CONF_DIR, register_schemas
    from medft.data import load_datasets

    register_schemas()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("train", overrides=["data=hira_csv"])
    ds, report = load_datasets(cfg.data, progress=False)
    assert all(len(ds[s]) > 0 for s in SPLITS)
    source = report["sources"]["hira_csv"]
    assert source["skipped"]["missing_value"]["count"] > 0
    assert set(source["encodings"].values()) == {"cp949", "utf-8-sig"}

    # The test's own reading of the shipped tables: every raw-measure answer ends with the cell.
    import csv
    import io

    cells = {}
    for path in SAMPLE.glob("*.csv"):
        text, _ = hira_csv.decode(path.read_bytes())
        rows = list(csv.reader(io.StringIO(text, newline="")))
        cells[path.name] = [dict(zip([h.strip() for h in rows[0]], row, strict=False)) for row in rows[1:]]
    columns = {"요양급여비용총액": "요양급여비용총액(선별포함)", "보험자부담금": "보험자부담금(선별포함)"}
    checked = derived = 0
    for split in SPLITS:
        for row in ds[split]:
            meta = row["meta"]
            if meta["source"] != "hira_csv":
                continue
            cell_row = cells[meta["file"]][int(meta["row"]) - 1]
            answer = row["messages"][-1]["content"]
            column = columns.get(meta["measure"], meta["measure"])
            if column in cell_row:
                assert last_number(answer) == cell_value(cell_row[column]), row["id"]
                checked += 1
            else:
                derived += 1
                numbers = [Decimal(n.replace(",", "")) for n in NUMBER.findall(answer)]
                total, count, result = numbers[-3:]
                places = -result.as_tuple().exponent
                assert abs(total / count - result) <= Decimal(5).scaleb(-places - 1), row["id"]
    assert checked and derived


def test_hira_csv_module_is_light():
    code = (
        "import sys, medft.data.sources.hira_csv; bad = {'datasets', 'torch', 'transformers', 'yaml'} & "
        "set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_prepare_converts_a_folder_to_jsonl(tmp_path, templates):
    """`python -m medft.prepare data=hira_csv` writes HIRA JSONL that data=hira reads back."""
    write(tmp_path / "tables" / "상병_2023.csv", table_text(), "cp949")
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medft.prepare",
            "data=hira_csv",
            f"data.sources.hira_csv.path={tmp_path / 'tables'}",
            f"data.sources.hira_csv.templates={templates}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.max_skip_ratio=0.5",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_DATASETS_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((run_dir / "data_report.json").read_text(encoding="utf-8"))
    assert report["sources"]["hira_csv"]["skipped"]["missing_value"]["count"] == 4
    out = run_dir / "hira_jsonl" / "hira_csv"
    lines = [
        json.loads(line)
        for name in ("train.jsonl", "val.jsonl", "test.jsonl")
        for line in (out / name).open(encoding="utf-8")
    ]
    assert lines and all(set(line) == {"instruction", "input", "output", "metadata"} for line in lines)
    assert all(line["input"] == "" for line in lines)
    assert f"data.sources.hira.path={out}" in result.stdout


def test_phrasings_of_one_table_cell_share_a_split():
    from hydra import compose, initialize_config_dir

    from medft.config import CONF_DIR, register_schemas
    from medft.data import collect_records

    register_schemas()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("train", overrides=["data=hira_csv"])
    splits, _ = collect_records(cfg.data, progress=False)
    facts = {
        s: {(r["meta"]["file"], r["meta"]["row"], r["meta"]["measure"]) for r in rows} for s, rows in splits.items()
    }
    assert facts["test"] and facts["validation"]
    assert not (facts["train"] & facts["test"]) and not (facts["train"] & facts["validation"])
