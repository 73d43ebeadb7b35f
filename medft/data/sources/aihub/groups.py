"""Which split a folder belongs to, and the files of each question/answer group as the walk finds them."""

from __future__ import annotations

import re
from typing import Any

from medft.data.report import SourceReport
from medft.data.sources.aihub.layout import QUESTION_DIR, Batch
from medft.data.sources.aihub.parse import Job

# Official folder and archive names that say which split a subtree is (TL/VL labels, TS/VS sources).
_TRAIN = re.compile(r"^(tl|ts|training)(\d+)?([ _.\-].*)?$", re.IGNORECASE)
_VALID = re.compile(r"^(vl|vs|validation)(\d+)?([ _.\-].*)?$", re.IGNORECASE)
_SPLIT_OF_TAG = {"TL": "train", "VL": "validation"}


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


class Groups:
    """Files by (tag, category, disease, intention) as batches arrive, and which groups are out.

    The first copy of a file wins; later copies (an archive next to its unzipped tree) are
    ignored. A group gets new files after it was handed out only when a copy holds files the
    first one lacked: it is then marked dirty and redone once everything is listed.
    """

    def __init__(self, report: SourceReport) -> None:
        self.report = report
        self.jobs: dict[tuple, Job] = {}
        self.out: set[tuple] = set()
        self.dirty: set[tuple] = set()
        self.files = 0
        self.saw_question = False
        self._seen: dict[tuple, list[str] | set[str]] = {}
        self._split: dict[tuple, tuple[str, str]] = {}

    def add(self, b: Batch) -> Job | None:
        """File the batch; return its group's job (None for files outside the layout)."""
        is_question = b.marker == QUESTION_DIR
        self.saw_question |= is_question
        kind = "question" if is_question else "answer"
        split_tag = self._split.get(b.above)
        if split_tag is None:
            split_tag = self._split[b.above] = split_of(b.above)
        split, tag = split_tag
        names, refs = b.names, b.refs
        key = (b.marker, tag, b.below)
        before = self._seen.get(key)
        if before is None and not b.may_repeat:
            self._seen[key] = names
        else:
            taken = before if isinstance(before, set) else set(before or ())
            self._seen[key] = taken
            keep = []
            for i, name in enumerate(names):
                if name in taken:
                    self.report.ignore(f"duplicate_{kind}_file", f"{b.rel_dir}/{name}")
                else:
                    taken.add(name)
                    keep.append(i)
            names, refs = [names[i] for i in keep], [refs[i] for i in keep]
        if not names:
            return None
        if len(b.below) != 3:
            self.report.read += len(names)
            for name in names:
                self.report.skip(f"{kind}_outside_category_disease_intention", f"{b.rel_dir}/{name}")
            return None
        group = (tag, *b.below)
        job = self.jobs.get(group)
        if job is None:
            job = self.jobs[group] = Job(group, _SPLIT_OF_TAG[tag], [], [])
        elif group in self.out:
            # The copy handed out stays as it was; the group is redone with every file.
            job = self.jobs[group] = Job(group, job.split, list(job.questions), list(job.answers))
            self.dirty.add(group)
        (job.questions if is_question else job.answers).append((b.rel_dir, b.base, names, refs))
        self.files += len(names)
        return job

    def take(self, keys: Any) -> list[Job]:
        """Hand out the jobs of ``keys`` not handed out yet, in that order."""
        jobs = [self.jobs[k] for k in keys if k not in self.out]
        self.out.update(job.key for job in jobs)
        return jobs

    def with_questions(self) -> list[tuple]:
        return [k for k, job in self.jobs.items() if job.questions and k not in self.out]

    def rest(self) -> list[tuple]:
        return [k for k in self.jobs if k not in self.out]
