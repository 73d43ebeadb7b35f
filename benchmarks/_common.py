"""Shared pieces of the training benchmarks: config, data, token counting, timing, memory.

Not a benchmark itself; ``train_throughput.py`` and ``mfu.py`` import it.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


IGNORE_INDEX = -100

# ----------------------------------------------------------------------------- config


def offline_environment() -> None:
    """Everything the benchmarks use is local: no hub lookups, no tokenizer thread pools."""
    for key, value in (("TOKENIZERS_PARALLELISM", "false"), ("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1")):
        os.environ.setdefault(key, value)


def compose(overrides: list[str] | None = None):
    """Compose conf/train.yaml exactly as ``python -m medft.train`` does (same as tests/conftest.py)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from medft.config import CONF_DIR, register_schemas

    register_schemas()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return hydra_compose("train", overrides=list(overrides or []))


# ----------------------------------------------------------------------------- data

# AI Hub 71762-like lengths, in tokens of a real subword tokenizer. The tiny tokenizer is
# character-level, so the generator writes one character per token it should cost; drawing
# characters instead would make every row ~1.6x longer than a real model sees it and
# understate padding. No length distribution of AI Hub 71762 is publicly documented; the one
# public answer record (HC-A-02781336) has num_of_words = 88 (어절), and its published text
# costs 2.47 tokens per word under the Llama 3 / 3.1 tokenizer (benchmarks/token_lengths.py
# --text; 2.63 on the shipped answers), so the answer median is 88 x 2.47 = 217 tokens.
# The spreads and the question median are assumptions, not measurements: answers log-normal
# with sigma 0.45 (a 3-part intro/body/conclusion answer, 5th-95th percentile ~100-455
# tokens), questions written by the public log-normal with a median of 60 characters = 41
# tokens at the 1.47 characters per token of the shipped questions, sigma 0.5.
ANSWER_MEDIAN_TOKENS = 217
ANSWER_SIGMA = 0.45
QUESTION_MEDIAN_TOKENS = 41
QUESTION_SIGMA = 0.5
MIN_CHARS, MAX_CHARS = 8, 4000


def lognormal_lengths(n: int, median: float, sigma: float, seed: int) -> list[int]:
    """``n`` integer lengths from a log-normal with the given median (exp(mu)) and sigma, seeded."""
    rng = random.Random(seed)
    mu = math.log(median)
    return [min(MAX_CHARS, max(MIN_CHARS, round(rng.lognormvariate(mu, sigma)))) for _ in range(n)]


def hangul_syllables() -> list[str]:
    """The precomposed Hangul syllables the tiny tokenizer has a token for."""
    from medft.modeling.tiny import character_inventory

    return [ch for ch in character_inventory() if "\uac00" <= ch <= "\ud7a3"]


def korean_text(rng: random.Random, n_chars: int, syllables: list[str], end: str = ".") -> str:
    """Exactly ``n_chars`` characters of Korean-looking text: words of 1-5 syllables (2.9 on
    average, as in the shipped samples), sentences of 4-12 words, ending in ``end``."""
    parts: list[str] = []
    length = 0
    words_left = rng.randint(4, 12)
    while length < n_chars:
        word = "".join(rng.choice(syllables) for _ in range(rng.choices((1, 2, 3, 4, 5), (1, 4, 5, 3, 1))[0]))
        words_left -= 1
        if words_left == 0:
            word += "."
            words_left = rng.randint(4, 12)
        parts.append(word)
        length += len(word) + 1
    body = " ".join(parts)[: max(n_chars - 1, 1)]
    if body.endswith(" "):
        body = body[:-1] + rng.choice(syllables)
    return body + end


def synthetic_conversations(
    n: int,
    seed: int = 0,
    answer_median: float = ANSWER_MEDIAN_TOKENS,
    question_median: float = QUESTION_MEDIAN_TOKENS,
):
    """``n`` user/assistant conversations in medft's record shape with AI Hub 71762-like lengths."""
    from datasets import Dataset

    syllables = hangul_syllables()
    q_lengths = lognormal_lengths(n, question_median, QUESTION_SIGMA, seed)
    a_lengths = lognormal_lengths(n, answer_median, ANSWER_SIGMA, seed + 1)
    rng = random.Random(seed + 2)
    rows = {"id": [], "messages": []}
    for i, (q, a) in enumerate(zip(q_lengths, a_lengths, strict=True)):
        rows["id"].append(f"synthetic/{i:06d}")
        rows["messages"].append(
            [
                {"role": "user", "content": korean_text(rng, q, syllables, end="?")},
                {"role": "assistant", "content": korean_text(rng, a, syllables)},
            ]
        )
    return Dataset.from_dict(rows)


def load_conversations(kind: str, cfg, n: int, seed: int = 0, **lengths):
    """The training conversations (``id``, ``messages``): ``synthetic`` or the shipped ``sample`` data."""
    if kind == "synthetic":
        return synthetic_conversations(n, seed, **lengths)
    if kind == "sample":
        from medft.data.cache import prepare_data

        datasets, _ = prepare_data(cfg.data)
        return datasets["train"].select_columns(["id", "messages"])
    raise ValueError(f"unknown data kind {kind!r}; use synthetic or sample")


# ----------------------------------------------------------------------------- counting


@dataclass
class BatchTokens:
    supervised: int  # labels != -100: what the loss is computed on
    real: int  # non-pad positions
    positions: int  # all positions, pad included


def count_batch(batch, pad_token_id: int) -> BatchTokens:
    """Token counts of one collated batch as the model sees it.

    Non-pad tokens come from the attention mask when the batch has one, else from the
    pad id (packed batches without a mask; the pad token never occurs in text).
    """
    input_ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    real = int(mask.sum()) if mask is not None else int((input_ids != pad_token_id).sum())
    supervised = int((batch["labels"] != IGNORE_INDEX).sum())
    return BatchTokens(supervised, real, int(input_ids.numel()))


@dataclass
class StepMeter:
    """Counts tokens per optimizer step and times steps, skipping the first ``warmup`` steps.

    Tokens are counted in ``Trainer.training_step``, i.e. from the batches the loss was
    actually computed on. The clock runs from the end of step ``warmup`` to the end of the
    last step, so it covers fetching and collating batches, forward, backward, optimizer
    step and logging, and leaves out model loading, dataset preparation and the final save.
    """

    pad_token_id: int
    warmup: int = 1
    step_ends: dict[int, float] = field(default_factory=dict)
    cpu_ends: dict[int, float] = field(default_factory=dict)  # this process's CPU time, all threads
    per_step: dict[int, BatchTokens] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)

    def attach(self, trainer) -> None:
        from transformers import TrainerCallback

        meter = self
        original = trainer.training_step

        def training_step(model, inputs, *args, **kwargs):
            counts = count_batch(inputs, meter.pad_token_id)
            step = trainer.state.global_step + 1
            acc = meter.per_step.setdefault(step, BatchTokens(0, 0, 0))
            acc.supervised += counts.supervised
            acc.real += counts.real
            acc.positions += counts.positions
            loss = original(model, inputs, *args, **kwargs)
            meter.losses.append(float(loss))
            return loss

        trainer.training_step = training_step

        class _Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                meter.step_ends[state.global_step] = time.perf_counter()
                meter.cpu_ends[state.global_step] = time.process_time()

        trainer.add_callback(_Clock())

    def summary(self) -> dict:
        steps = sorted(self.step_ends)
        if self.warmup < 1 or len(steps) <= self.warmup:
            raise RuntimeError(f"{len(steps)} steps ran; need warmup >= 1 and more steps than warmup={self.warmup}")
        first = steps[self.warmup - 1]
        timed = steps[self.warmup :]
        seconds = self.step_ends[timed[-1]] - self.step_ends[first]
        sup = sum(self.per_step[s].supervised for s in timed)
        real = sum(self.per_step[s].real for s in timed)
        pos = sum(self.per_step[s].positions for s in timed)
        return {
            "steps_timed": len(timed),
            "seconds": seconds,
            "s_per_step": seconds / len(timed),
            "cpu_s_per_step": (self.cpu_ends[timed[-1]] - self.cpu_ends[first]) / len(timed),
            "supervised_tok_s": sup / seconds,
            "real_tok_s": real / seconds,
            "pad_fraction": 1 - real / pos if pos else 0.0,
            "supervised_per_step": sup / len(timed),
            "real_per_step": real / len(timed),
            "positions_per_step": pos / len(timed),
            "loss_first": self.losses[0] if self.losses else float("nan"),
            "loss_last": self.losses[-1] if self.losses else float("nan"),
        }


# ----------------------------------------------------------------------------- memory


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so the next RSS baseline is honest."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled by a thread.

    ``ru_maxrss`` only ever grows within a process, so it cannot tell one variant from the
    next; this samples ``psutil``'s RSS every ``interval`` seconds and reports the peak and
    the peak minus the RSS at entry (after ``release_memory``).
    """

    def __init__(self, interval: float = 0.02):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start_bytes = 0
        self.peak_bytes = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self):
        release_memory()
        self.start_bytes = self.peak_bytes = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._proc.memory_info().rss)
        return False

    @property
    def delta_mib(self) -> float:
        return (self.peak_bytes - self.start_bytes) / 2**20

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


def _busy_seconds() -> float:
    import psutil

    t = psutil.cpu_times()
    return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq", "steal"))


def _own_seconds() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def cores() -> int:
    return len(os.sched_getaffinity(0))


class OtherCpu:
    """Share of the machine's cores that other processes kept busy while the block ran.

    On a shared machine a throughput number is only as good as its quiet; this makes the
    contention visible next to every measurement instead of hiding it in the median.
    """

    def __enter__(self):
        self._t, self._busy, self._own = time.perf_counter(), _busy_seconds(), _own_seconds()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t
        others = (_busy_seconds() - self._busy) - (_own_seconds() - self._own)
        self.share = max(0.0, others) / (wall * cores()) if wall > 0 else 0.0
        return False


def wait_for_idle(max_wait: float, threshold: float = 0.1, window: float = 1.0) -> float:
    """Wait (up to ``max_wait`` s) until other processes use less than ``threshold`` of the cores."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait:
        with OtherCpu() as probe:
            time.sleep(window)
        if probe.share < threshold:
            break
    return time.perf_counter() - start


def median(values) -> float:
    return statistics.median(values)


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cores()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"
