"""Prepared datasets cached by a fingerprint of their inputs and of the data config.

Reading the AI Hub tree means parsing hundreds of thousands of files; a second run over
the same inputs (a sweep, a resumed job, `prepare` then `train`) loads the Arrow copy
instead. The key covers every input file's path, size and modification time, the hub id
and revision of hub sources, the data config, medft's data-format version and the data
code itself (every ``medft/data`` source file as it is on disk), so any change to what
would be produced, an upgrade that parses differently included, gives a new key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2  # bump when the records a loader produces change for the same inputs
# Data settings checked after the cache (against benchmarks): they never change the records.
NOT_IN_KEY = ("cache_dir", "allow_contamination", "contamination_benchmarks")


def cache_root(data_cfg: Any) -> Path:
    configured = data_cfg.get("cache_dir")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("MEDFT_CACHE", Path.home() / ".cache" / "medft")) / "prepared"


def _stat_inputs(path: str, digest) -> None:
    root = Path(path).expanduser()
    if root.is_file():
        st = root.stat()
        digest.update(f"{root.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return
    if not root.exists():
        digest.update(f"missing:{root}\n".encode())
        return
    stack = [root]
    entries = []
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    st = entry.stat()
                    entries.append(f"{os.path.relpath(entry.path, root)}|{st.st_size}|{st.st_mtime_ns}")
    for line in sorted(entries):
        digest.update(line.encode() + b"\n")


def source_digest(paths: Iterable[Path]) -> str:
    """A hash of source files as they are on disk (path inside medft, then bytes).

    Cached outputs keyed by it are rebuilt whenever the code that made them changes, not
    only when someone remembers to bump a version.
    """
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(Path(p).resolve() for p in paths):
        if path.is_file():
            name = path.relative_to(package).as_posix() if path.is_relative_to(package) else path.name
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def data_code_digest() -> str:
    """The loaders, cleaning, splits and report code: everything that decides the records."""
    return source_digest(Path(__file__).resolve().parent.rglob("*.py"))


def fingerprint_inputs(data_cfg: Any) -> str:
    from omegaconf import OmegaConf

    import medft

    config = OmegaConf.to_container(data_cfg, resolve=True, enum_to_str=True)
    for key in NOT_IN_KEY:
        config.pop(key, None)
    digest = hashlib.sha256()
    digest.update(json.dumps([FORMAT_VERSION, medft.__version__, data_code_digest(), config], sort_keys=True).encode())
    for name in sorted(config["sources"]):
        source = config["sources"][name]
        digest.update(f"source:{name}\n".encode())
        if source.get("templates"):
            _stat_inputs(source["templates"], digest)
        if source.get("path"):
            _stat_inputs(source["path"], digest)
        else:
            digest.update(f"hub:{source.get('hub_id')}@{source.get('revision')}\n".encode())
    return digest.hexdigest()[:24]


def load_cached(entry: Path):
    if not (entry / "complete").is_file():
        return None
    from datasets import load_from_disk

    report = json.loads((entry / "data_report.json").read_text(encoding="utf-8"))
    return load_from_disk(str(entry / "dataset")), report


def save(entry: Path, datasets, report: dict) -> None:
    """Write to a temporary folder and rename, so a crash never leaves a half entry."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=entry.parent))
    try:
        datasets.save_to_disk(str(staging / "dataset"))
        (staging / "data_report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
        (staging / "complete").write_text("ok\n")
        if (entry / "complete").is_file():
            return  # another job (a parallel sweep) wrote the same entry first; readers may be on it
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        os.replace(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare_data(data_cfg: Any, *, progress: bool = True, use_cache: bool = True):
    """The prepared DatasetDict and its report, from the cache when the inputs are unchanged."""
    import datasets as _datasets  # noqa: F401  (imported before the clock starts: both paths need it)

    from medft.data import load_datasets

    started = time.perf_counter()
    key = fingerprint_inputs(data_cfg)
    entry = cache_root(data_cfg) / key
    if use_cache:
        cached = load_cached(entry)
        if cached is not None:
            datasets, report = cached
            report["cache"] = {
                "hit": True,
                "key": key,
                "path": str(entry),
                "seconds": round(time.perf_counter() - started, 4),
            }
            return datasets, report
    datasets, report = load_datasets(data_cfg, progress=progress)
    report["cache"] = {"hit": False, "key": key, "path": str(entry)}
    if use_cache:
        save(entry, datasets, report)
    report["cache"]["seconds"] = round(time.perf_counter() - started, 4)
    return datasets, report
