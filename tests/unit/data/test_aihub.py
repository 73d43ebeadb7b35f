"""AI Hub 71762 loader: folders and zips in the real layouts, every kind of bad file, the pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path

import pytest

from medft.data.records import make_record, validate_record
from medft.data.report import SourceReport
from medft.data.sources import aihub
from medft.data.sources.aihub.files import _central_directory, _zipfile_members, list_zip, scan
from medft.runtime.errors import DataError

G1 = ("순환기질환", "고혈압", "식이, 생활")
G2 = ("감염성질환", "결핵", "약물")
G3 = ("호흡기질환", "천식", "운동")  # questions only
G4 = ("피부질환", "건선", "치료")  # answers only
LABELS = ("Training", "02.라벨링데이터")
BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------- fixtures
def q_obj(name: str, text, group=G1) -> dict:
    category, disease, intention = group
    return {
        "fileName": name,
        "participantsInfo": {"participantID": "P00012", "gender": "여", "age": "40대", "occupation": "회사원"},
        "disease_category": category,
        "disease_name": {"kor": disease, "eng": "Hypertension"},
        "intention": intention,
        "question": text,
        "entities": [{"text": disease, "entity": "질병", "position": 0}],
    }


def a_obj(name: str, body, group=G1, intro="", conclusion="") -> dict:
    category, disease, intention = group
    return {
        "fileName": name,
        "disease_category": category,
        "disease_name": {"kor": disease, "eng": "Hypertension"},
        "department": ["내과", "가정의학과"],
        "intention": intention,
        "answer": {"intro": intro, "body": body, "conclusion": conclusion},
        "num_of_words": 12,
    }


def put(base: Path, marker: str, group: tuple, name: str, content, *, bom: bool = False) -> Path:
    """One file under ``base/marker/category/disease/intention``: a dict as JSON, or raw bytes."""
    path = base.joinpath(marker, *group, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content if isinstance(content, bytes) else json.dumps(content, ensure_ascii=False, indent=2).encode()
    path.write_bytes((BOM if bom else b"") + data)
    return path


def good_group(base: Path, group: tuple, n_q: int, n_a: int, prefix: str = "0") -> None:
    for i in range(n_q):
        put(
            base,
            "1.질문",
            group,
            f"HC-Q-{prefix}{i:06d}.json",
            q_obj(f"HC-Q-{prefix}{i:06d}", f"{group[1]} 질문 {prefix}{i}?", group),
        )
    for i in range(n_a):
        name = f"HC-A-{prefix}{i:07d}"
        put(
            base,
            "2.답변",
            group,
            f"{name}.json",
            a_obj(name, f"{group[1]} 답변 {prefix}{i}.", group, intro="안녕하세요."),
        )


def messy_tree(root: Path) -> Path:
    """The official layout with every kind of bad file planted (expected counts in MESSY)."""
    tl = root.joinpath(*LABELS, "TL")
    put(tl, "1.질문", G1, "HC-Q-0000001.json", q_obj("HC-Q-0000001", "짜게 먹으면 혈압이 오르나요?"), bom=True)
    put(tl, "1.질문", G1, "HC-Q-0000002.json", q_obj("HC-Q-0000002", "커피는 괜찮나요?"))
    put(tl, "1.질문", G1, "HC-Q-0000003.json", q_obj("HC-Q-0000003", "술은 얼마나 마셔도 되나요?"))
    put(tl, "2.답변", G1, "HC-A-00000001.json", a_obj("HC-A-00000001", "소금을 줄이세요.", intro="네."), bom=True)
    put(tl, "2.답변", G1, "HC-A-00000002.json", a_obj("HC-A-00000002", "채소를 드세요."))
    put(tl, "1.질문", G1, "notes.txt", b"not data")
    put(tl, "1.질문", G1, "._HC-Q-0000001.json", b"\x00\x05\x16\x07 AppleDouble")

    put(tl, "1.질문", G2, "HC-Q-1000001.json", q_obj("HC-Q-1000001", "결핵약은 언제 먹나요?", G2))
    put(tl, "1.질문", G2, "HC-Q-1000002.json", q_obj("HC-Q-1000002", "결핵약 부작용은요?", G2))
    cp949 = json.dumps(q_obj("HC-Q-1000003", "결핵약을 빼먹었어요.", G2), ensure_ascii=False).encode("cp949")
    put(tl, "1.질문", G2, "HC-Q-1000003.json", cp949)  # read_as_cp949
    put(
        tl, "1.질문", G2, "HC-Q-1000004.json", b'{"fileName": "HC-Q-1000004", "question": "\xea\xb2\xb0\xed'
    )  # truncated
    put(tl, "1.질문", G2, "HC-Q-1000005.json", b"[1, 2]")  # wrong_type
    put(tl, "1.질문", G2, "HC-Q-1000006.json", q_obj("HC-Q-1000006", 5, G2))  # wrong_type
    missing = q_obj("HC-Q-1000007", "", G2)
    del missing["question"]
    put(tl, "1.질문", G2, "HC-Q-1000007.json", missing)  # missing_field
    put(tl, "1.질문", G2, "HC-Q-1000008.json", q_obj("HC-Q-1000008", "   ", G2))  # empty
    put(tl, "1.질문", G2, "HC-Q-1000009.json", b"\xff\xfe{\x00}\x00")  # not_utf8 (UTF-16)
    put(tl, "2.답변", G2, "HC-A-10000001.json", a_obj("HC-A-10000001", "식후에 드세요.", G2))
    bad = a_obj("HC-A-10000002", "", G2)
    bad["answer"] = "식후에 드세요."
    put(tl, "2.답변", G2, "HC-A-10000002.json", bad)  # wrong_type
    no_answer = a_obj("HC-A-10000003", "", G2)
    del no_answer["answer"]
    put(tl, "2.답변", G2, "HC-A-10000003.json", no_answer)  # missing_field
    no_parts = a_obj("HC-A-10000004", "", G2)
    no_parts["answer"] = {}
    put(tl, "2.답변", G2, "HC-A-10000004.json", no_parts)  # missing_field
    put(tl, "2.답변", G2, "HC-A-10000005.json", a_obj("HC-A-10000005", 3, G2))  # wrong_type
    put(tl, "2.답변", G2, "HC-A-10000006.json", a_obj("HC-A-10000006", "  ", G2))  # empty
    put(tl, "2.답변", G2, "HC-A-10000007.json", b"")  # invalid_json

    good_group(tl, G3, 2, 0, "3")  # question_without_answer_in_group x2
    good_group(tl, G4, 0, 2, "4")  # orphan_answer x2
    put(tl, "1.질문", G1[:2], "HC-Q-9999999.json", q_obj("HC-Q-9999999", "층이 모자란 질문"))  # outside

    vl = root.joinpath("Validation", "02.라벨링데이터")  # flattened: no VL/ folder
    good_group(vl, G1, 1, 1, "9")
    return root


MESSY_SKIPPED = {
    "question_invalid_json": 1,
    "question_wrong_type": 2,
    "question_missing_field": 1,
    "empty_question": 1,
    "question_not_utf8": 1,
    "answer_wrong_type": 2,
    "answer_missing_field": 2,
    "empty_answer": 1,
    "answer_invalid_json": 1,
    "question_without_answer_in_group": 2,
    "orphan_answer": 2,
    "question_outside_category_disease_intention": 1,
}
MESSY_TL_QUESTIONS, MESSY_TL_ANSWERS = 15, 11  # data files under TL, bad ones included


def zip_dir(folder: Path, path: Path, *, compression=zipfile.ZIP_DEFLATED, names=None) -> Path:
    """A zip of ``folder`` whose members start with ``1.질문/``, like the distributed TL.zip."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for filename in sorted(filenames):
                full = Path(dirpath) / filename
                rel = full.relative_to(folder).as_posix()
                archive.writestr(names(rel) if names else rel, full.read_bytes())
    return path


class _RawName(zipfile.ZipInfo):
    """A member whose name bytes are written as given, without the UTF-8 flag (old tools)."""

    encoded: bytes = b""

    def _encodeFilenameFlags(self):
        return self.encoded, self.flag_bits & ~0x800


def zip_raw_names(folder: Path, path: Path, encode) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for full in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = _RawName(full.relative_to(folder).as_posix())
            info.encoded = encode(info.filename)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, full.read_bytes())
    return path


def load(path: Path, **kwargs):
    """(records by split, report) straight from the loader."""
    options = {k: kwargs.pop(k) for k in ("pairing", "pairing_cap") if k in kwargs}
    report = SourceReport(name="aihub", kind="aihub", path=str(path))
    src = {"path": str(path), "pairing": "first", "pairing_cap": 3, **options}
    kwargs.setdefault("progress", False)
    out = aihub.load("aihub", src, seed=kwargs.pop("seed", 42), report=report, **kwargs)
    return out, report


def pairs_of(out: dict) -> dict[str, list[tuple]]:
    """What pairing made, without the file paths (which name the folder or the zip)."""
    return {
        split: sorted(
            (r["id"], r["messages"][0]["content"], r["messages"][1]["content"], r["meta"]["department"]) for r in rows
        )
        for split, rows in out.items()
    }


def all_rows(out: dict) -> list[dict]:
    return [r for rows in out.values() for r in rows]


# --------------------------------------------------------------------------- bad input, counted
def test_messy_tree_counts_every_reason_exactly(tmp_path):
    out, report = load(messy_tree(tmp_path / "71762"))
    assert dict(report.skipped) == MESSY_SKIPPED
    assert report.read == MESSY_TL_QUESTIONS + MESSY_TL_ANSWERS + 2
    assert {k: len(v) for k, v in out.items()} == {"train": 6, "validation": 1}
    assert dict(report.ignored) == {"not_a_json_file": 2}
    assert report.info["read_as_cp949"]["count"] == 1
    assert report.info["read_as_cp949"]["examples"][0].endswith("약물/HC-Q-1000003.json")
    assert report.info["pairing"] == {
        "policy": "first",
        "groups": 5,
        "questions": 9,
        "questions_paired": 7,
        "answers": 6,
        "answers_used": 3,
        "answers_unused": 3,
        "pairs": 7,
        "groups_without_answers": 1,
        "groups_without_questions": 1,
    }
    examples = report.to_dict()["skipped"]
    assert examples["question_not_utf8"]["examples"] == [
        "Training/02.라벨링데이터/TL/1.질문/감염성질환/결핵/약물/HC-Q-1000009.json"
    ]
    assert [Path(p).name for p in examples["orphan_answer"]["examples"]] == ["HC-A-40000000.json", "HC-A-40000001.json"]
    kept = {r["id"].rsplit("/", 1)[-1] for r in all_rows(out)}
    assert {"HC-Q-0000001", "HC-Q-1000003", "HC-Q-9000000"} <= kept  # BOM, cp949, flattened VL


def test_messy_tree_and_its_zip_side_by_side_ignores_the_copies(tmp_path):
    root = messy_tree(tmp_path / "71762")
    labels = root.joinpath(*LABELS)
    zip_dir(labels / "TL", labels / "TL.zip")
    out, report = load(root)
    assert dict(report.skipped) == MESSY_SKIPPED
    assert report.read == MESSY_TL_QUESTIONS + MESSY_TL_ANSWERS + 2
    assert dict(report.ignored) == {
        "duplicate_question_file": MESSY_TL_QUESTIONS,
        "duplicate_answer_file": MESSY_TL_ANSWERS,
        "not_a_json_file": 4,
    }
    assert report.info["archives"] == ["Training/02.라벨링데이터/TL.zip"]
    assert pairs_of(out) == pairs_of(load(root, workers=1)[0])


def test_a_broken_zip_member_is_skipped_and_the_rest_kept(tmp_path):
    tree = tmp_path / "tree"
    good_group(tree, G1, 3, 1)
    archive = zip_dir(tree, tmp_path / "VL.zip", compression=zipfile.ZIP_STORED)
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("1.질문/순환기질환/고혈압/식이, 생활/HC-Q-0000001.json")
    raw = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 20] ^= 0xFF  # inside the member's data: its CRC no longer matches
    archive.write_bytes(bytes(raw))
    out, report = load(archive)
    assert dict(report.skipped) == {"broken_zip_member": 1}
    assert report.to_dict()["skipped"]["broken_zip_member"]["examples"] == [
        "VL.zip/1.질문/순환기질환/고혈압/식이, 생활/HC-Q-0000001.json"
    ]
    assert report.read == 4 and len(out["validation"]) == 2


def test_a_zip_that_is_not_a_zip_is_skipped_next_to_good_data(tmp_path):
    good_group(tmp_path.joinpath(*LABELS, "TL"), G1, 2, 1)
    tmp_path.joinpath(*LABELS, "VL.zip").write_bytes(b"PK\x03\x04 cut off")
    out, report = load(tmp_path)
    assert dict(report.skipped) == {"broken_zip": 1}
    assert report.read == 4 and len(out["train"]) == 2


def test_empty_folder_is_one_line_naming_the_key(tmp_path):
    (tmp_path / "Training" / "02.라벨링데이터").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        load(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "data.sources.aihub.path" in message and "no '1.질문/" in message


def test_zip_without_questions_is_named_in_the_error(tmp_path):
    tree = tmp_path / "tree"
    good_group(tree, G1, 0, 2)
    (tmp_path / "data").mkdir()
    zip_dir(tree, tmp_path / "data" / "TL.zip")
    with pytest.raises(DataError, match=r"found TL\.zip, but no member under 1\.질문/"):
        load(tmp_path / "data")


@pytest.mark.parametrize(
    ("path", "message"),
    [("missing", "does not exist"), ("notes.txt", "not a .zip"), ("tree/1.질문", "holds both 1.질문 and 2.답변")],
)
def test_bad_paths_are_one_line_errors(tmp_path, path, message):
    good_group(tmp_path / "tree", G1, 1, 1)
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        load(tmp_path / path)
    assert "\n" not in str(err.value) and "data.sources.aihub.path" in str(err.value)


def test_same_file_name_twice_in_a_group(tmp_path):
    """A copy under another name is ignored; a different question reusing a fileName is skipped."""
    tree = tmp_path / "tree"
    good_group(tree, G1, 2, 1)
    put(tree, "1.질문", G1, "HC-Q-0000000 (1).json", q_obj("HC-Q-0000000", f"{G1[1]} 질문 00?"))
    put(tree, "1.질문", G1, "HC-Q-0000000 (2).json", q_obj("HC-Q-0000000", "다른 질문인데 이름이 같아요"))
    out, report = load(tree)
    assert dict(report.ignored) == {"duplicate_question_file": 1}
    assert dict(report.skipped) == {"question_duplicate_file_name": 1}
    assert report.read == 4 and len(out["train"]) == 2
    assert len({r["id"] for r in out["train"]}) == 2


def test_symlink_loop_is_walked_once(tmp_path):
    tree = tmp_path / "tree"
    good_group(tree, G1, 2, 1)
    os.symlink(tree / "1.질문", tree / "1.질문" / G1[0] / "loop")
    out, report = load(tree)
    assert len(out["train"]) == 2 and report.skipped_total == 0


# --------------------------------------------------------------------------- layouts and names
def test_both_label_layouts_under_training_and_validation(tmp_path):
    root = tmp_path / "120.초거대AI 사전학습용 헬스케어 질의응답 데이터" / "3.개방데이터" / "1.데이터"
    good_group(root / "Training" / "02.라벨링데이터" / "TL", G1, 3, 1, "1")
    good_group(root / "Training" / "02.라벨링데이터", G2, 2, 1, "2")
    good_group(root / "Validation" / "02.라벨링데이터" / "VL", G1, 2, 1, "3")
    good_group(root / "Validation" / "02.라벨링데이터", G2, 1, 1, "4")
    out, report = load(root)
    assert report.skipped_total == 0 and report.read == 12
    assert {k: len(v) for k, v in out.items()} == {"train": 5, "validation": 3}
    assert {r["meta"]["source_split"] for r in out["validation"]} == {"VL"}
    assert all(r["id"].startswith("aihub/TL/") for r in out["train"])
    comma = [r for r in out["train"] if r["meta"]["intention"] == "식이, 생활"]
    assert len(comma) == 3 and all("/식이, 생활/" in r["id"] for r in comma)


def test_split_comes_from_the_zip_name(tmp_path):
    tree = tmp_path / "tree"
    good_group(tree, G1, 2, 1)
    (tmp_path / "data").mkdir()
    zip_dir(tree, tmp_path / "data" / "TL.zip")
    zip_dir(tree, tmp_path / "data" / "VL.zip")
    out, report = load(tmp_path / "data")
    assert {k: len(v) for k, v in out.items()} == {"train": 2, "validation": 2}
    assert report.info["archives"] == ["TL.zip", "VL.zip"]
    assert out["validation"][0]["meta"]["question_file"].startswith("VL.zip/1.질문/")
    single, _ = load(tmp_path / "data" / "VL.zip")
    assert list(single) == ["validation"]
    labels = tmp_path / "Validation" / "02.라벨링데이터"
    labels.mkdir(parents=True)
    zip_dir(tree, labels / "labels.zip")  # no split in the name: the folders above say it
    assert list(load(tmp_path / "Validation")[0]) == ["validation"]


def test_folder_and_zip_give_the_same_pairs(tmp_path):
    tree = tmp_path / "TL"
    for i, (group, n_q, n_a) in enumerate(((G1, 3, 2), (G2, 4, 1), (G3, 5, 0), (G4, 0, 2))):
        good_group(tree, group, n_q, n_a, str(i))
    zipped = zip_dir(tree, tmp_path / "TL.zip")
    for pairing in ("first", "random", "all"):
        from_folder, folder_report = load(tree, pairing=pairing)
        from_zip, zip_report = load(zipped, pairing=pairing)
        assert pairs_of(from_folder) == pairs_of(from_zip)
        assert folder_report.info["pairing"] == zip_report.info["pairing"]
        assert (
            dict(folder_report.skipped)
            == dict(zip_report.skipped)
            == {"question_without_answer_in_group": 5, "orphan_answer": 2}
        )


def test_nfd_and_unflagged_member_names_become_nfc(tmp_path):
    tree = tmp_path / "tree"
    good_group(tree, G1, 2, 1)
    nfd = lambda name: unicodedata.normalize("NFD", name)  # noqa: E731
    expected = pairs_of(load(tree)[0])
    archives = [
        zip_dir(tree, tmp_path / "mac.zip", names=nfd),  # UTF-8 flag set, names NFD (macOS)
        zip_raw_names(tree, tmp_path / "old.zip", lambda n: nfd(n).encode("utf-8")),  # no flag: read as cp437
        zip_raw_names(tree, tmp_path / "win.zip", lambda n: n.encode("cp949")),  # no flag, Korean Windows
    ]
    for archive in archives:
        out, report = load(archive)
        assert pairs_of(out) == expected, archive.name
        assert report.skipped_total == 0
        for row in all_rows(out):
            assert unicodedata.is_normalized("NFC", row["meta"]["question_file"])
            assert row["meta"]["intention"] == "식이, 생활"
    nfd_folder = tmp_path / "nfd"
    good_group(nfd_folder, tuple(nfd(p) for p in G1), 2, 1)
    assert pairs_of(load(nfd_folder)[0]) == expected


def test_cp949_folder_names_unpacked_as_raw_bytes(tmp_path):
    """``unzip`` of a Windows-made archive on Linux leaves cp949 bytes as folder names."""
    tree = tmp_path / "tree"
    good_group(tree, G2, 2, 1)
    raw_root = os.fsencode(tmp_path / "raw")
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        target = os.path.join(raw_root, *(part.encode("cp949") for part in path.relative_to(tree).parts))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(path.read_bytes())
    out, report = load(tmp_path / "raw")
    assert pairs_of(out) == pairs_of(load(tree)[0]) and report.skipped_total == 0
    assert out["train"][0]["meta"]["question_file"] == "1.질문/감염성질환/결핵/약물/HC-Q-0000000.json"


def test_cp949_names_without_the_flag_are_listed(tmp_path):
    tree = tmp_path / "tree"
    good_group(tree, G2, 1, 1)
    listing = scan(str(zip_raw_names(tree, tmp_path / "win.zip", lambda n: n.encode("cp949"))), ("win.zip",))
    assert [b.rel_dir for b in listing.batches] == [
        "win.zip/1.질문/감염성질환/결핵/약물",
        "win.zip/2.답변/감염성질환/결핵/약물",
    ]
    assert list_zip(str(tmp_path / "missing.zip"), "missing.zip", (), listing) == []
    assert listing.broken_zips[0][0] == "missing.zip"


def test_central_directory_reader_agrees_with_zipfile(tmp_path):
    """Zip64 (more than 65,535 members, as TL.zip has) and bytes prepended to the archive."""
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as archive:
        archive.mkdir("1.질문")  # a folder entry, which is not a file
        for i in range(66_000):
            archive.writestr(f"1.질문/a/b/c/HC-Q-{i:07d}.json", b"{}")
    assert b"PK\x06\x06" in big.read_bytes()[-200:]
    members = _central_directory(str(big))
    assert len(members) == 66_000 and members == _zipfile_members(str(big))
    tree = tmp_path / "tree"
    good_group(tree, G1, 2, 1)
    prefixed = tmp_path / "sfx.zip"
    prefixed.write_bytes(b"#!/bin/sh\nexit 0\n" + zip_dir(tree, tmp_path / "plain.zip").read_bytes())
    assert _central_directory(str(prefixed)) == _zipfile_members(str(prefixed))
    assert pairs_of(load(prefixed)[0]) == pairs_of(load(tree)[0])


# --------------------------------------------------------------------------- records and the pool
def test_records_follow_the_contract(tmp_path):
    out, _ = load(messy_tree(tmp_path / "71762"), pairing="all", pairing_cap=2)
    rows = all_rows(out)
    assert rows
    for row in rows:
        validate_record(row)
        user, assistant = (m["content"] for m in row["messages"])
        assert make_record(row["id"], user, assistant, row["meta"]) == row
    row = next(r for r in rows if r["id"].startswith("aihub/TL/순환기질환/고혈압/식이, 생활/HC-Q-0000001/"))
    assert row["messages"][1]["content"] == "네. 소금을 줄이세요."
    assert row["meta"]["department"] == "내과, 가정의학과" and row["meta"]["disease_eng"] == "Hypertension"


def big_tree(root: Path) -> Path:
    """Enough groups for many chunks, with bad files sprinkled in."""
    groups = [
        (c, d, i)
        for c in ("감염성질환", "순환기질환")
        for d in ("결핵", "고혈압", "천식")
        for i in ("약물", "식이, 생활")
    ]
    for n, group in enumerate(groups):
        good_group(root, group, 4 + n % 5, n % 3, f"{n:02d}")
        put(root, "1.질문", group, f"HC-Q-bad{n:03d}.json", b'{"question": ')
    return root


class SpyPool(aihub.ProcessPoolExecutor):
    """Records what was sent to the pool (the workers fork from this process, as usual)."""

    calls: list[str] = []

    def submit(self, fn, *args, **kwargs):
        SpyPool.calls.append(fn.__name__)
        return super().submit(fn, *args, **kwargs)


@pytest.mark.skipif(aihub.pool_context() is None, reason="the pool needs fork")
@pytest.mark.parametrize("source", ["folder", "zip", "both"])
def test_process_pool_gives_the_same_records_and_report(tmp_path, monkeypatch, source):
    tree = big_tree(tmp_path / "TL")
    if source != "folder":
        zip_dir(tree, tmp_path / "TL.zip")
    path = {"folder": tree, "zip": tmp_path / "TL.zip", "both": tmp_path}[source]
    monkeypatch.setattr(aihub, "ProcessPoolExecutor", SpyPool)
    for pairing in ("random", "all"):
        SpyPool.calls = []
        seq_out, seq_report = load(path, pairing=pairing, workers=1)
        assert SpyPool.calls == []
        pool_out, pool_report = load(path, pairing=pairing, workers=2, pool_threshold=0, chunk_files=7)
        assert len(SpyPool.calls) > 5 and "run_shared_chunk" in SpyPool.calls
        assert pool_out == seq_out
        assert pool_report.to_dict() == seq_report.to_dict()
        assert seq_report.skipped["question_invalid_json"] == 12
    if source == "folder":  # chunks cut after the pool started travel with their task
        assert "run_chunk" in SpyPool.calls


@pytest.mark.skipif(aihub.pool_context() is None, reason="the pool needs fork")
def test_a_worker_that_dies_does_not_lose_its_chunks(tmp_path, monkeypatch):
    from medft.data.sources.aihub import parse as aihub_parse

    tree = big_tree(tmp_path / "TL")
    expected = load(tree, workers=1)
    parent = os.getpid()
    real = aihub_parse.run_job

    def dies_in_workers(*args, **kwargs):
        if os.getpid() != parent:
            os._exit(1)  # as if killed for memory
        return real(*args, **kwargs)

    monkeypatch.setattr(aihub_parse, "run_job", dies_in_workers)
    out, report = load(tree, workers=2, pool_threshold=0, chunk_files=7, progress=True)
    assert out == expected[0] and report.to_dict() == expected[1].to_dict()


def test_a_copy_with_extra_files_redoes_its_group(tmp_path):
    """TL.zip is listed before the folder; the folder's extra question still joins the group."""
    labels = tmp_path.joinpath(*LABELS)
    good_group(labels / "TL", G1, 2, 1)
    zip_dir(labels / "TL", labels / "TL.zip")
    put(labels / "TL", "1.질문", G1, "HC-Q-0000009.json", q_obj("HC-Q-0000009", "나중에 받은 질문"))
    for kwargs in ({"workers": 1}, {"workers": 2, "pool_threshold": 0, "chunk_files": 1}):
        out, report = load(tmp_path, **kwargs)
        ids = sorted(r["id"].rsplit("/", 1)[-1] for r in out["train"])
        assert ids == ["HC-Q-0000000", "HC-Q-0000001", "HC-Q-0000009"]
        assert dict(report.ignored) == {"duplicate_question_file": 2, "duplicate_answer_file": 1}
        assert report.read == 4 and report.info["pairing"]["questions"] == 3


def test_loader_imports_no_model_libraries():
    code = (
        "import sys, medft.data.sources.aihub, medft.data.sources.aihub.parse, medft.data.sources.aihub.files; "
        "bad = {'torch', 'transformers', 'datasets'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_garbage_collector_is_left_as_found(tmp_path):
    import gc

    good_group(tmp_path / "tree", G1, 2, 1)
    frozen = gc.get_freeze_count()
    load(tmp_path / "tree")
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    gc.disable()
    try:
        load(tmp_path / "tree")
        assert not gc.isenabled()
    finally:
        gc.enable()
