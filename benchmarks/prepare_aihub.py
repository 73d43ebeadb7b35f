"""AI Hub 71762 loading speed: medft's loader (folder and TL.zip) against a naive json.load loop.

    .venv/bin/python benchmarks/prepare_aihub.py [--pairs 100000] [--repeats 5] [--keep]

Writes a synthetic tree in the real layout (``TL/1.질문/<category>/<disease>/<intention>/
HC-Q-#######.json`` and ``TL/2.답변/...``, about one answer per three questions per group)
and a ``TL.zip`` of it to a temporary folder, then times, alternating so drift hits every
contender alike: the naive baseline (sequential ``os.walk`` + ``json.load`` per file, then the
same first-answer pairing by folder), medft from the folder (sequential and with its process
pool) and medft from the zip. Prints pairs/s medians and their ratios to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from medft.data.report import SourceReport  # noqa: E402
from medft.data.sources import aihub  # noqa: E402

CATEGORIES = {
    "감염성질환": ["결핵", "대상포진", "폐렴", "A형 간염", "수두"],
    "귀코목질환": ["급성 중이염", "비염", "편도염", "메니에르병"],
    "근골격질환": ["골다공증", "요추 추간판 탈출증", "오십견", "류마티스 관절염"],
    "순환기질환": ["고혈압", "협심증", "심부전", "부정맥"],
    "소화기질환": ["위염", "역류성 식도염", "과민성 대장 증후군", "담석증"],
    "피부질환": ["아토피 피부염", "건선", "두드러기", "여드름"],
    "호흡기질환": ["천식", "만성 폐쇄성 폐질환", "기관지염"],
    "뇌신경정신질환": ["편두통", "우울증", "불면증", "뇌졸중"],
    "여성질환": ["자궁근종", "다낭성 난소 증후군", "질염"],
    "유방내분비질환": ["갑상선 기능 저하증", "당뇨병", "유방암"],
}
ENGLISH = {
    "결핵": "Tuberculosis",
    "고혈압": "Hypertension",
    "급성 중이염": "Acute otitis media",
    "당뇨병": "Diabetes mellitus",
}
INTENTIONS = ["정의", "증상", "원인", "진단", "치료", "약물", "예방", "식이, 생활", "운동", "재활", "검진"]
DEPARTMENTS = ["내과", "가정의학과", "이비인후과", "피부과", "정형외과", "신경과", "산부인과", "감염내과"]
ASKS = [
    "{d} 진단을 받았는데 {i} 관련해서 무엇을 알아야 하나요?",
    "요즘 {d} 때문에 걱정이 많습니다. {i} 쪽으로 조심할 점이 있을까요?",
    "어머니가 {d}이신데 {i}에 대해 자세히 알려주실 수 있나요?",
    "{d} 환자는 {i} 측면에서 어떻게 관리해야 하나요? 일상생활에 지장이 있어서요.",
]
SENTENCES = [
    "{d}은(는) 조기에 발견하여 꾸준히 관리하면 충분히 조절할 수 있는 질환입니다.",
    "증상이 지속되거나 악화되면 반드시 전문의와 상담하여 정확한 진단을 받는 것이 중요합니다.",
    "규칙적인 생활 습관과 균형 잡힌 식사는 {d}의 관리에 큰 도움이 됩니다.",
    "처방받은 약은 임의로 중단하지 말고 정해진 용법과 용량을 지켜 복용해야 합니다.",
    "정기적인 검진을 통해 합병증 여부를 확인하고 치료 계획을 조정할 수 있습니다.",
    "흡연과 과도한 음주는 {d}의 경과를 나쁘게 할 수 있으므로 피하는 것이 좋습니다.",
]


def _dump(obj: dict, rng: random.Random) -> bytes:
    data = json.dumps(obj, ensure_ascii=False, indent=4).encode("utf-8")
    return b"\xef\xbb\xbf" + data if rng.random() < 0.05 else data  # a few files carry a BOM


def make_tree(root: Path, pairs: int, seed: int = 0) -> tuple[int, int]:
    """Write ``pairs`` questions and about a third as many answers; return (questions, answers)."""
    rng = random.Random(seed)
    groups = [(c, d, i) for c, ds in CATEGORIES.items() for d in ds for i in INTENTIONS]
    n_q = n_a = 0
    q_id, a_id = 1_000_000, 10_000_000
    while n_q < pairs:
        for category, disease, intention in groups:
            if n_q >= pairs:
                break
            k = min(pairs - n_q, rng.randint(6, 60))
            qdir = root / "1.질문" / category / disease / intention
            adir = root / "2.답변" / category / disease / intention
            qdir.mkdir(parents=True, exist_ok=True)
            adir.mkdir(parents=True, exist_ok=True)
            for _ in range(k):
                q_id += 1
                name = f"HC-Q-{q_id:07d}"
                obj = {
                    "fileName": name,
                    "participantsInfo": {
                        "participantID": f"P{rng.randint(1, 99999):05d}",
                        "gender": rng.choice(["남", "여"]),
                        "age": rng.choice(["20대", "30대", "40대", "50대", "60대 이상"]),
                        "occupation": rng.choice(["회사원", "자영업", "학생", "주부", "무직"]),
                        "history": rng.choice(["없음", "고혈압", "당뇨", "천식"]),
                        "rPlace": rng.choice(["서울", "부산", "대구", "광주", "대전"]),
                    },
                    "disease_category": category,
                    "disease_name": {"kor": disease, "eng": ENGLISH.get(disease, "Disease")},
                    "intention": intention,
                    "question": rng.choice(ASKS).format(d=disease, i=intention),
                    "entities": [
                        {"text": disease, "entity": "질병", "position": 0},
                        {"text": intention, "entity": "의도", "position": 12},
                    ],
                }
                (qdir / f"{name}.json").write_bytes(_dump(obj, rng))
            for _ in range(max(1, round(k / 3))):
                a_id += 1
                name = f"HC-A-{a_id:08d}"
                text = [rng.choice(SENTENCES).format(d=disease) for _ in range(8)]
                obj = {
                    "fileName": name,
                    "disease_category": category,
                    "disease_name": {"kor": disease, "eng": ENGLISH.get(disease, "Disease")},
                    "department": rng.sample(DEPARTMENTS, 2),
                    "intention": intention,
                    "answer": {"intro": text[0], "body": " ".join(text[1:7]), "conclusion": text[7]},
                    "num_of_words": sum(len(t.split()) for t in text),
                }
                (adir / f"{name}.json").write_bytes(_dump(obj, rng))
                n_a += 1
            n_q += k
    return n_q, n_a


def make_zip(tree: Path, path: Path) -> None:
    """A TL.zip whose members start with ``1.질문/`` as the distributed one does."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames.sort()
            for filename in sorted(filenames):
                full = os.path.join(dirpath, filename)
                archive.write(full, os.path.relpath(full, tree))


def naive(root: str) -> int:
    """What a first script does: walk, json.load every file, pair each question with its folder's first answer."""
    questions: dict[tuple, list[str]] = {}
    answers: dict[tuple, list[str]] = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        parts = os.path.relpath(dirpath, root).split(os.sep)
        if len(parts) != 4 or parts[0] not in ("1.질문", "2.답변"):
            continue
        key = tuple(parts[1:])
        for filename in sorted(filenames):
            with open(os.path.join(dirpath, filename), encoding="utf-8-sig") as f:
                data = json.load(f)
            if parts[0] == "1.질문":
                questions.setdefault(key, []).append(data["question"])
            else:
                a = data["answer"]
                answers.setdefault(key, []).append(" ".join(t for t in (a["intro"], a["body"], a["conclusion"]) if t))
    pairs = [(q, answers[key][0]) for key, qs in questions.items() if key in answers for q in qs]
    return len(pairs)


def medft(path: str, workers: int | None = None) -> int:
    report = SourceReport(name="aihub", kind="aihub", path=path)
    src = {"path": path, "pairing": "first", "pairing_cap": 3}
    by_split = aihub.load("aihub", src, seed=42, report=report, progress=False, workers=workers)
    assert report.skipped_total == 0, report.to_dict()["skipped"]
    return sum(len(v) for v in by_split.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=100_000, help="questions to generate (= pairs under pairing=first)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the generated tree and zip, and print where")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="medft-aihub-bench-"))
    try:
        tree = work / "Training" / "02.라벨링데이터" / "TL"
        start = time.perf_counter()
        n_q, n_a = make_tree(tree, args.pairs)
        zip_path = work / "TL.zip"
        make_zip(tree, zip_path)
        print(
            f"generated {n_q} questions + {n_a} answers ({n_q + n_a} files, TL.zip "
            f"{zip_path.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - start:.0f}s; {os.cpu_count()} CPUs, {aihub.default_workers()} workers"
        )
        contenders = {
            "naive os.walk + json.load": lambda: naive(str(tree)),
            "medft folder, 1 process": lambda: medft(str(tree), workers=1),
            "medft folder": lambda: medft(str(tree)),
            "medft TL.zip": lambda: medft(str(zip_path)),
        }
        rates: dict[str, list[float]] = {k: [] for k in contenders}
        naive(str(tree))  # warm the page cache so no contender pays for the first read
        for _ in range(args.repeats):
            for label, run in contenders.items():
                start = time.perf_counter()
                pairs = run()
                seconds = time.perf_counter() - start
                if pairs != n_q:
                    raise SystemExit(f"{label} made {pairs} pairs, expected {n_q}")
                rates[label].append(pairs / seconds)
        base = statistics.median(rates["naive os.walk + json.load"])
        print(f"{'contender':<30} {'pairs/s (median)':>17} {'vs naive':>9}")
        for label, samples in rates.items():
            median = statistics.median(samples)
            print(f"{label:<30} {median:>17,.0f} {median / base:>8.2f}x")
        if args.keep:
            print(f"kept {work}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
