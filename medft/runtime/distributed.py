"""Which process this is in a multi-process job, from the launcher's environment.

torchrun sets RANK and WORLD_SIZE; medft's own workers also carry MEDFT_WORKER=1 so a
worker never launches workers of its own.
"""

from __future__ import annotations

import os

WORKER_ENV = "MEDFT_WORKER"


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank() == 0


def is_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1"
