"""`python -m medft.prepare`: the data stage alone, its report, and the cache train reuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def _prepare(tmp_path, run: str, *args):
    env = {**os.environ, "MEDFT_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "medft.prepare", *args, f"hydra.run.dir={tmp_path / run}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out, json.loads((tmp_path / run / "data_report.json").read_text(encoding="utf-8"))


def test_prepare_prints_a_summary_and_the_second_run_reuses_the_cache(tmp_path):
    first_out, first = _prepare(tmp_path, "first", "data=sample")
    assert "source" in first_out.stdout and "aihub" in first_out.stdout and "total" in first_out.stdout
    aihub = first["sources"]["aihub"]
    files = f"files: read {aihub['read']} = used {aihub['used']} + skipped 0 + left unused {aihub['left_unused_total']}"
    assert files in first_out.stdout
    assert f"rows: formed {aihub['formed']} = kept {aihub['kept']} + dropped 0" in first_out.stdout
    assert first["cache"]["hit"] is False
    mtimes = [p.stat().st_mtime for p in Path(first["cache"]["path"]).rglob("*") if p.is_file()]
    second_out, second = _prepare(tmp_path, "second", "data=sample")
    assert second["cache"]["hit"] is True and second["cache"]["key"] == first["cache"]["key"]
    assert "cache reused" in second_out.stdout
    # Reused, not rebuilt: the cached files were not written again (speed is measured by benchmarks).
    cached = [p for p in Path(second["cache"]["path"]).rglob("*") if p.is_file()]
    assert cached and all(p.stat().st_mtime <= written for p, written in zip(cached, mtimes, strict=True))
    assert second["splits"] == first["splits"] and second["fingerprint"] == first["fingerprint"]


def test_a_changed_config_or_input_gets_a_new_cache_entry(tmp_path):
    _, base = _prepare(tmp_path, "a", "data=sample")
    _, other_seed = _prepare(tmp_path, "b", "data=sample", "data.seed=7")
    assert other_seed["cache"]["hit"] is False and other_seed["cache"]["key"] != base["cache"]["key"]
    folder = tmp_path / "hira"
    folder.mkdir()
    rows = [
        json.dumps({"instruction": f"질문 {i}", "input": "", "output": f"답 {i}", "metadata": {}}, ensure_ascii=False)
        for i in range(20)
    ]
    (folder / "train.jsonl").write_text("\n".join(rows), encoding="utf-8")
    _, one = _prepare(tmp_path, "c", "data=hira", f"data.sources.hira.path={folder}")
    (folder / "train.jsonl").write_text("\n".join(rows[:-1]), encoding="utf-8")
    _, two = _prepare(tmp_path, "d", "data=hira", f"data.sources.hira.path={folder}")
    assert two["cache"]["hit"] is False and two["splits"] != one["splits"]


def test_train_reuses_what_prepare_cached(tmp_path):
    from medft.data.cache import prepare_data

    from conftest import compose_config

    cfg = compose_config(["data.cache_dir=" + str(tmp_path / "cache")])
    _, first = prepare_data(cfg.data, progress=False)
    datasets, second = prepare_data(cfg.data, progress=False)
    assert (first["cache"]["hit"], second["cache"]["hit"]) == (False, True)
    assert len(datasets["train"]) == first["splits"]["train"]
    assert datasets["train"][0]["messages"][-1]["role"] == "assistant"
