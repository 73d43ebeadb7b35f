"""AI Hub 71762 (초거대AI 사전학습용 헬스케어 질의응답 데이터) as chat records.

Questions (``1.질문/<category>/<disease>/<intention>/HC-Q-*.json``) and answers
(``2.답변/.../HC-A-*.json``) share no id: they only share their folder, so pairs are made
inside each (split, category, disease, intention) group with a configurable policy. The
folders are found wherever they sit under the root, because unzipped copies differ
(``Training/02.라벨링데이터/TL/1.질문``, ``02.라벨링데이터/1.질문``, ``TL/1.질문``...), and
the distributed ``TL.zip``/``VL.zip`` are read in place, so nobody has to unzip 500k files.

The real tree is hundreds of thousands of small files. Answer folders and archives are
listed first, then each question folder completes its group, which goes straight to a
process pool in chunks (:mod:`medft.data.sources.aihub.parse`) while the walk goes on; the records
and the report are the same as when everything runs in this process.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from medft.data.report import SourceReport
from medft.data.sources.aihub.files import walk
from medft.data.sources.aihub.groups import Groups, split_of
from medft.data.sources.aihub.layout import ANSWER_DIR, QUESTION_DIR, Listing, fs_name
from medft.data.sources.aihub.options import SOURCE_URL, no_questions, options
from medft.data.sources.aihub.parse import (
    ANSWER_PARTS,
    SHARED,
    GroupResult,
    Job,
    NotShared,
    Params,
    init_worker,
    run_chunk,
    run_job,
    run_shared_chunk,
)
from medft.data.sources.aihub.reading import Readers
from medft.data.sources.aihub.results import merge, with_records

__all__ = [
    "ANSWER_DIR",
    "ANSWER_PARTS",
    "GROUP_BY",
    "QUESTION_DIR",
    "SOURCE_URL",
    "STRATIFY",
    "UNIT",
    "Groups",
    "load",
    "split_of",
]

STRATIFY = ("category", "intention")
# Pairing gives the questions of one folder that folder's answers: the folder (within the
# source's own split) is one group for carving, so no held-out answer is a training answer.
GROUP_BY = ("source_split", "category", "disease", "intention")
UNIT = "files"
# Below this many files a pool costs more to start than it saves.
POOL_THRESHOLD = 2000
# Files per chunk sent to a worker: big enough to amortise the round trip, small enough to balance.
CHUNK_FILES = 1000
MAX_WORKERS = 8
_tokens = itertools.count()


def default_workers() -> int:
    """CPUs this process may use, capped: reading is I/O and JSON bound, more barely helps."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def _n_files(job: Job) -> int:
    return sum(len(b[2]) for b in job.questions) + sum(len(b[2]) for b in job.answers)


def pool_context():
    """A fork context, or None where fork is not the safe choice.

    Forked workers share the parent's imports and need no ``if __name__ == "__main__"`` guard
    in the caller's script; spawn would re-run that script in every worker. macOS system
    libraries are not fork-safe, so there (and on Windows) files are read in this process.
    """
    if sys.platform == "darwin" or "fork" not in multiprocessing.get_all_start_methods():
        return None
    return multiprocessing.get_context("fork")


class _NoBar:
    total = 0

    def update(self, n: int) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, progress: bool):
    """A tqdm bar, or nothing at all (not even tqdm's monitor thread) without progress."""
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="file", leave=False)


class Runner:
    """Runs groups in chunks of about ``chunk_files`` files, in a process pool once there is
    enough work (more than ``pool_threshold`` files listed), else in this process.

    Chunks are cut as groups are handed in, so workers parse while the walk goes on. Those
    cut before the pool starts are inherited by the forked workers (a task is then just an
    index); later ones travel with their task. ``finish(results)`` turns each chunk's
    results into records here, as they arrive. A pool that breaks (a worker killed, e.g. out
    of memory) is not fatal: the chunks it did not finish are run here.
    """

    def __init__(
        self,
        params: Params,
        *,
        workers: int,
        pool_threshold: int,
        chunk_files: int,
        desc: str,
        progress: bool,
        finish: Callable[[list[GroupResult]], Any],
    ) -> None:
        self.params, self.workers, self.threshold = params, workers, pool_threshold
        self.chunk_files, self.desc, self.progress, self.finish = max(1, chunk_files), desc, progress, finish
        self.listed = 0
        self.chunks: list[list[Job]] = []
        self.sizes: list[int] = []
        self.results: list[Any] = []
        self._pending: list[Job] = []
        self._pending_files = 0
        self._pool: ProcessPoolExecutor | None = None
        self._shared = 0
        self._futures: dict[Future, int] = {}
        self._arrived: deque[Future] = deque()
        self._token = next(_tokens)
        self._bar: Any = None
        self._can_pool = workers > 1 and pool_context() is not None

    def add(self, jobs: list[Job]) -> None:
        new = len(self.chunks)
        for job in jobs:
            self._pending.append(job)
            self._pending_files += _n_files(job)
            if self._pending_files >= self.chunk_files:
                self._cut()
        self._dispatch(new)
        self._collect()

    def _cut(self) -> None:
        if self._pending:
            self.chunks.append(self._pending)
            self.sizes.append(self._pending_files)
            self.results.append(None)
            self._pending, self._pending_files = [], 0

    def _dispatch(self, new: int) -> None:
        """Send chunks ``new:`` to the pool, starting it once there is enough work."""
        if self._pool is not None:
            for i in range(new, len(self.chunks)):
                self._submit(i)
        elif self._can_pool and self.listed > self.threshold and len(self.chunks) > 1:
            self._start()

    def _start(self) -> None:
        SHARED[self._token] = self.chunks[:]  # inherited by the workers forked below
        self._shared = len(self.chunks)
        self._pool = ProcessPoolExecutor(
            min(self.workers, MAX_WORKERS), mp_context=pool_context(), initializer=init_worker
        )
        for i in range(len(self.chunks)):  # the first submit forks the workers
            self._submit(i)
        self._bar = _bar(self.listed, self.desc, self.progress)  # its thread starts after the fork

    def _submit(self, i: int) -> None:
        try:
            if i < self._shared:
                future = self._pool.submit(run_shared_chunk, self.params, self._token, i)
            else:
                future = self._pool.submit(run_chunk, self.params, self.chunks[i])
        except BrokenProcessPool:
            return  # run here at the end
        self._futures[future] = i
        future.add_done_callback(self._arrived.append)

    def _collect(self) -> None:
        """Take the results that arrived so far (the pool's thread only queues them)."""
        while self._arrived:
            self._take(self._arrived.popleft())

    def _take(self, future: Future) -> None:
        """Turn one chunk's results into records, here; a second call for it does nothing."""
        i = self._futures.pop(future, None)
        if i is None:
            return
        try:
            result = future.result()
        except (NotShared, BrokenProcessPool, CancelledError):
            return  # run here at the end
        self.results[i] = self.finish(result)
        self._bar.update(self.sizes[i])

    def run(self) -> list[Any]:
        """Every chunk's ``finish(results)``, in chunk order."""
        new = len(self.chunks)
        self._cut()
        self._dispatch(new)
        if self._pool is not None:
            self._bar.total = self.listed
            self._bar.refresh()
            for future in as_completed(list(self._futures)):
                self._take(future)
        missing = [i for i, r in enumerate(self.results) if r is None]
        if missing:
            if self._bar is None:
                self._bar = _bar(sum(self.sizes[i] for i in missing), self.desc, self.progress)
            with Readers() as readers:
                for i in missing:
                    self.results[i] = self.finish(run_chunk(self.params, self.chunks[i], readers))
                    self._bar.update(self.sizes[i])
        return self.results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        SHARED.pop(self._token, None)
        # Futures hold their results and, through their callbacks, the queue they sit in:
        # a cycle that would keep every parsed file alive until a full collection.
        self._arrived.clear()
        self._futures.clear()
        if self._bar is not None:
            self._bar.close()


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
    root, policy, cap = options(name, src)
    # Millions of small objects are made and the records all survive: the cyclic GC would
    # rescan them again and again for nothing (about a third of the load time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        params = Params(name, policy, cap, seed)
        workers = default_workers() if workers is None else max(1, int(workers))
        return _load(root, params, report, progress, workers, pool_threshold, chunk_files)
    finally:
        if not gc.get_freeze_count():  # never unfreeze what the caller froze
            # Hand the survivors to the oldest generation (freeze, then unfreeze, moves
            # them there in O(1)) instead of letting the next young collection walk them all.
            gc.freeze()
            gc.unfreeze()
        if gc_was_enabled:
            gc.enable()


def _load(
    root: Path,
    params: Params,
    report: SourceReport,
    progress: bool,
    workers: int,
    pool_threshold: int,
    chunk_files: int,
) -> dict[str, list[dict]]:
    listing = Listing([], [], [], [])
    groups = Groups(report)
    runner = Runner(
        params,
        workers=workers,
        pool_threshold=pool_threshold,
        chunk_files=chunk_files,
        desc=f"{params.name}: reading",
        progress=progress,
        finish=with_records(params.name, params.policy),
    )
    try:
        answers_listed = False
        for batch in walk(str(root), tuple(fs_name(p) for p in root.resolve().parts), listing):
            if batch is None:
                # Every answer and archive is listed: groups with questions are complete.
                answers_listed = True
                runner.add(groups.take(groups.with_questions()))
                continue
            job = groups.add(batch)
            runner.listed = groups.files
            if answers_listed and job is not None and batch.marker == QUESTION_DIR:
                runner.add(groups.take([job.key]))
        for reason, rel in listing.ignored:
            report.ignore(reason, rel)
        for rel, _why in listing.broken_zips:
            report.read += 1
            report.skip("broken_zip", rel)
        if not groups.saw_question:
            raise no_questions(params.name, root, listing)
        if listing.zips:
            report.info["archives"] = list(listing.zips)
        runner.add(groups.take(groups.rest()))
        chunks = runner.run()
    finally:
        runner.close()
    if groups.dirty:
        redo = with_records(params.name, params.policy)
        with Readers() as readers:
            chunks = [
                [
                    redo([run_job(params, groups.jobs[r.key], readers)])[0] if r.key in groups.dirty else (r, rows)
                    for r, rows in chunk
                ]
                for chunk in chunks
            ]
    return merge(params, chunks, report)
