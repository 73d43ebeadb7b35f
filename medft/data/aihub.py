"""AI Hub 71762 (초거대AI 사전학습용 헬스케어 질의응답 데이터) as chat records.

Questions (``1.질문/<category>/<disease>/<intention>/HC-Q-*.json``) and answers
(``2.답변/.../HC-A-*.json``) share no id: they only share their folder, so pairs are made
inside each (split, category, disease, intention) group with a configurable policy. The
folders are found wherever they sit under the root, because unzipped copies differ
(``Training/02.라벨링데이터/TL/1.질문``, ``02.라벨링데이터/1.질문``, ``TL/1.질문``...), and
the distributed ``TL.zip``/``VL.zip`` are read in place, so nobody has to unzip 500k files.

The real tree is hundreds of thousands of small files, so whole groups are handed in chunks
to a process pool (:mod:`medft.data.aihub_parse`); the report is the same either way.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from medft.data.aihub_files import ANSWER_DIR, QUESTION_DIR, Found, Listing, Readers, is_zip_name, scan
from medft.data.aihub_parse import ANSWER_PARTS, STAT_KEYS, ChunkResult, Job, Params, init_worker, run_chunk
from medft.data.records import nfc
from medft.data.report import SourceReport
from medft.errors import DataError

__all__ = ["ANSWER_DIR", "ANSWER_PARTS", "QUESTION_DIR", "STRATIFY", "load", "split_of"]

STRATIFY = ("category", "intention")
SOURCE_URL = "https://aihub.or.kr/aihubdata/data/view.do?dataSetSn=71762"
# Official folder and archive names that say which split a subtree is (TL/VL labels, TS/VS sources).
_TRAIN = re.compile(r"^(tl|ts|training)(\d+)?([ _.\-].*)?$", re.IGNORECASE)
_VALID = re.compile(r"^(vl|vs|validation)(\d+)?([ _.\-].*)?$", re.IGNORECASE)
_SPLIT_OF_TAG = {"TL": "train", "VL": "validation"}
# Below this many files a pool costs more to start than it saves.
POOL_THRESHOLD = 2000
# Files per chunk sent to a worker: big enough to amortise the round trip, small enough to balance.
CHUNK_FILES = 400
MAX_WORKERS = 8


def split_of(parts: tuple[str, ...]) -> tuple[str, str]:
    """(split, tag) from the folders (or archive stem) above a ``1.질문``/``2.답변`` folder, nearest first.

    ``parts`` runs from the filesystem root down, so a flattened
    ``Validation/02.라벨링데이터/1.질문`` is still validation. Default: train/TL.
    """
    for part in reversed(parts):
        if _VALID.match(part):
            return "validation", "VL"
        if _TRAIN.match(part):
            return "train", "TL"
    return "train", "TL"


def default_workers() -> int:
    """CPUs this process may use, capped: reading is I/O and JSON bound, more barely helps."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def _missing_path(name: str) -> DataError:
    return DataError(
        f"data.sources.{name}.path is not set: download AI Hub dataset 71762 ({SOURCE_URL}) and pass "
        f"data.sources.{name}.path=<folder holding Training/ and Validation/, or TL.zip itself>"
    )


def _options(name: str, src: Any) -> tuple[Path, str, int]:
    if not src.get("path"):
        raise _missing_path(name)
    root = Path(str(src.get("path"))).expanduser()
    if not root.exists():
        raise DataError(f"data.sources.{name}.path={root} does not exist; point it at the AI Hub 71762 data ({SOURCE_URL})")
    if root.is_file() and not is_zip_name(root.name):
        raise DataError(
            f"data.sources.{name}.path={root} is a file but not a .zip; point it at TL.zip/VL.zip or the folder holding them"
        )
    if root.is_dir() and nfc(root.name) in (QUESTION_DIR, ANSWER_DIR):
        raise DataError(
            f"data.sources.{name}.path={root} is a '{nfc(root.name)}' folder; point it at the folder that holds "
            f"both {QUESTION_DIR} and {ANSWER_DIR} (or any folder above it)"
        )
    policy = str(getattr(src.get("pairing"), "value", src.get("pairing") or "first"))
    if policy not in ("first", "random", "all"):
        raise DataError(f"data.sources.{name}.pairing={policy} must be one of first, random, all")
    cap = int(src.get("pairing_cap") or 0)
    if policy == "all" and cap < 1:
        raise DataError(f"data.sources.{name}.pairing_cap={cap} must be >= 1 with pairing=all")
    return root, policy, cap


def _no_questions(name: str, root: Path, listing: Listing) -> DataError:
    if listing.broken_zips:
        hint = " (" + "; ".join(f"{rel} is not a readable zip: {why}" for rel, why in listing.broken_zips[:2]) + ")"
    elif listing.zips:
        hint = f" (found {', '.join(listing.zips[:3])}, but no member under {QUESTION_DIR}/)"
    else:
        hint = ""
    return DataError(
        f"data.sources.{name}.path={root}: no '{QUESTION_DIR}/<category>/<disease>/<intention>/*.json' files were found "
        f"in the folders or zips below it{hint}; point it at the AI Hub 71762 labelled data "
        f"(TL.zip/VL.zip or their unzipped folders, {SOURCE_URL})"
    )


def group_files(found: list[Found], report: SourceReport) -> list[Job]:
    """Jobs per (tag, category, disease, intention), sorted; duplicates and misplaced files reported."""
    seen: set[tuple] = set()
    groups: dict[tuple, Job] = {}
    split_cache: dict[tuple, tuple[str, str]] = {}
    for f in found:
        is_question = f.marker == QUESTION_DIR
        kind = "question" if is_question else "answer"
        split_tag = split_cache.get(f.above)
        if split_tag is None:
            split_tag = split_cache[f.above] = split_of(f.above)
        split, tag = split_tag
        key = (f.marker, tag, *f.below, f.name)
        if key in seen:
            # The same file reached twice, e.g. TL.zip next to its unzipped copy.
            report.ignore(f"duplicate_{kind}_file", f.rel)
            continue
        seen.add(key)
        if len(f.below) != 3:
            report.read += 1
            report.skip(f"{kind}_outside_category_disease_intention", f.rel)
            continue
        group = (tag, *f.below)
        job = groups.get(group)
        if job is None:
            job = groups[group] = Job(group, _SPLIT_OF_TAG[tag], [], [])
        (job.questions if is_question else job.answers).append((f.ref, f.rel))
    return [groups[k] for k in sorted(groups)]


def chunk_jobs(jobs: list[Job], size: int) -> list[list[Job]]:
    """Whole groups in chunks of about ``size`` files (a bigger group is a chunk of its own)."""
    chunks: list[list[Job]] = []
    current: list[Job] = []
    n = 0
    for job in jobs:
        current.append(job)
        n += len(job.questions) + len(job.answers)
        if n >= size:
            chunks.append(current)
            current, n = [], 0
    if current:
        chunks.append(current)
    return chunks


def _mp_context():
    """fork when this process has no other threads (fast, safe); otherwise a clean start."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def run_chunks(
    params: Params, chunks: list[list[Job]], *, workers: int, use_pool: bool, desc: str, progress: bool
) -> list[ChunkResult]:
    """Every chunk's result, in chunk order, from a process pool or from this process."""
    from tqdm.auto import tqdm

    sizes = [sum(len(j.questions) + len(j.answers) for j in chunk) for chunk in chunks]
    results: list[ChunkResult | None] = [None] * len(chunks)
    if use_pool:
        pool = ProcessPoolExecutor(min(workers, len(chunks)), mp_context=_mp_context(), initializer=init_worker)
        try:
            # Submit (and so start the workers) before the progress bar starts its thread.
            futures = {pool.submit(run_chunk, params, chunk): i for i, chunk in enumerate(chunks)}
            with tqdm(total=sum(sizes), desc=desc, unit="file", disable=not progress) as bar:
                try:
                    for future in as_completed(futures):
                        i = futures[future]
                        results[i] = future.result()
                        bar.update(sizes[i])
                except BrokenProcessPool:
                    pass  # a worker died (e.g. out of memory): finish the rest here
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        with Readers() as readers, tqdm(
            total=sum(sizes[i] for i in missing), desc=desc, unit="file", disable=not progress
        ) as bar:
            for i in missing:
                results[i] = run_chunk(params, chunks[i], readers)
                bar.update(sizes[i])
    return results  # type: ignore[return-value]


def _merge(name: str, params: Params, results: list[ChunkResult], report: SourceReport) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    stats = [0] * len(STAT_KEYS)
    cp949: list[str] = []
    for result in results:
        for split, record in result.records:
            out.setdefault(split, []).append(record)
        for kind, reason, rel in result.events:
            if kind == "skip":
                report.skip(reason, rel)
            elif kind == "ignore":
                report.ignore(reason, rel)
            else:
                cp949.append(rel)
        stats = [a + b for a, b in zip(stats, result.stats)]
    s = dict(zip(STAT_KEYS, stats))
    report.read += s["read"]
    report.info["pairing"] = {
        "policy": params.policy,
        **({"cap": params.cap} if params.policy == "all" else {}),
        "groups": s["groups"],
        "questions": s["questions"],
        "questions_paired": s["questions_paired"],
        "answers": s["answers"],
        "answers_used": s["answers_used"],
        "answers_unused": s["answers"] - s["answers_used"],
        "pairs": s["pairs"],
        "groups_without_answers": s["groups_without_answers"],
        "groups_without_questions": s["groups_without_questions"],
    }
    if cp949:
        # Readable, but not UTF-8 as the dataset promises: kept, and said so.
        report.info["read_as_cp949"] = {"count": len(cp949), "examples": cp949[:3]}
    return out


def load(
    name: str,
    src: Any,
    *,
    seed: int,
    report: SourceReport,
    progress: bool = True,
    workers: int | None = None,
    pool_threshold: int = POOL_THRESHOLD,
    chunk_files: int = CHUNK_FILES,
) -> dict[str, list[dict]]:
    """Records by split: TL (Training) -> train, VL (Validation) -> validation.

    ``src.path`` is a folder (unzipped trees and/or zips anywhere below it) or one .zip.
    More than ``pool_threshold`` files are parsed by ``workers`` processes.
    """
    root, policy, cap = _options(name, src)
    root_parts = tuple(nfc(p) for p in root.resolve().parts)
    listing = scan(str(root), root_parts)
    for reason, rel in listing.ignored:
        report.ignore(reason, rel)
    for rel, _why in listing.broken_zips:
        report.read += 1
        report.skip("broken_zip", rel)
    if not any(f.marker == QUESTION_DIR for f in listing.found):
        raise _no_questions(name, root, listing)
    if listing.zips:
        report.info["archives"] = list(listing.zips)

    jobs = group_files(listing.found, report)
    params = Params(name, policy, cap, seed)
    chunks = chunk_jobs(jobs, max(1, chunk_files))
    n_files = sum(len(j.questions) + len(j.answers) for j in jobs)
    workers = default_workers() if workers is None else max(1, int(workers))
    use_pool = workers > 1 and n_files > pool_threshold and len(chunks) > 1
    results = run_chunks(params, chunks, workers=workers, use_pool=use_pool, desc=f"{name}: reading", progress=progress)
    return _merge(name, params, results, report)
