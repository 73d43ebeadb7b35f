"""python -m medft.evaluate on a tiny trained run and on a base model; offline and typo errors in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from medft.config import SAMPLES_DIR
from medft.runtime.errors import ConfigError, DataError
from medft.training.pipeline import JobInfo, run_training

from conftest import REPO, compose_config, compose_evaluate

PUBMEDQA_TRAIN = SAMPLES_DIR / "pubmedqa_ko" / "pubmedqa_test_ko.json"
KORMEDMCQA = f"eval.path={SAMPLES_DIR}/eval/kormedmcqa"
PUBMEDQA = f"eval.path={SAMPLES_DIR}/eval/pubmedqa_ko.json"
COMMON_KEYS = {"benchmark", "kind", "created", "seconds", "model", "settings", "metrics", "groups", "items"}
METRICS = {
    "kormedmcqa": {"exact_match", "no_answer_rate", "n", "exact_match_doctor"},
    "pubmedqa_ko": {"accuracy", "macro_f1", "rouge_l_char", "f1_char", "n", "excluded_seen"},
    "heldout": {
        "loss",
        "perplexity",
        "supervised_tokens",
        "rouge_l_char",
        "f1_char",
        "n",
        "latency_s_mean",
        "latency_s_median",
        "new_tokens_mean",
        "new_tokens_median",
        "tokens_per_s_mean",
        "tokens_per_s_median",
    },
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny LoRA run on the PubMedQA-Ko sample: two steps, no checkpoints, one validation row (seconds on CPU)."""
    run = tmp_path_factory.mktemp("evaluate") / "run"
    cfg = compose_config(
        [
            "logger=none",
            "train.max_steps=2",
            "train.save_strategy=no",
            "train.per_device_batch_size=2",
            "train.max_length=512",
            "data=pubmedqa_ko",
            f"data.sources.pubmedqa_ko.path={PUBMEDQA_TRAIN}",
            "data.validation_ratio=0.0",
        ]
    )
    run_training(cfg, JobInfo(run_dir=run))
    return run


def _evaluate(overrides: list[str], job_dir: Path):
    from medft.evals.runner import evaluate

    return evaluate(compose_evaluate(overrides), job_dir, overrides, progress=False)


def _cli(*args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "medft.evaluate", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _check_result(path: Path, name: str) -> dict:
    result = json.loads(path.read_text(encoding="utf-8"))
    assert COMMON_KEYS <= set(result), set(result)
    assert result["benchmark"] == name
    assert METRICS[name] <= set(result["metrics"]), set(result["metrics"])
    assert result["items"]
    return result


@pytest.mark.parametrize(
    "name, extra",
    [
        ("kormedmcqa", [KORMEDMCQA, "eval.limit=1", "eval.fewshot=2", "eval.max_new_tokens=4"]),
        ("pubmedqa_ko", [PUBMEDQA, "eval.limit=3", "eval.max_new_tokens=8"]),
        ("heldout", ["eval.limit=3", "eval.max_new_tokens=8"]),
    ],
)
def test_each_benchmark_on_a_run(run_dir, tmp_path, name, extra):
    result, path = _evaluate([f"run={run_dir}", f"eval={name}", "logger=none", *extra], tmp_path)
    assert path == run_dir / "eval" / f"{name}.json"
    result = _check_result(path, name)
    assert result["model"]["run_dir"] == str(run_dir) and result["model"]["is_adapter"] is True
    metrics = result["metrics"]
    if name == "kormedmcqa":
        assert set(result["groups"]) == {"doctor", "nurse", "pharm", "dentist"} and metrics["n"] == 4
        assert all(item["target"] in "ABCDE" for item in result["items"])
    elif name == "pubmedqa_ko":
        assert metrics["n"] == 3 and 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
        assert {i["prediction"] for i in result["items"]} <= {"yes", "no", "maybe"}
    else:
        assert metrics["loss"] > 0 and metrics["perplexity"] > 1 and metrics["n"] == 3
        assert metrics["new_tokens_mean"] > 0 and metrics["tokens_per_s_mean"] > 0
        assert set(result["groups"]) == {"pubmedqa_ko"}


def test_cli_prints_a_table_and_writes_the_result(run_dir, tmp_path):
    out = _cli(
        f"run={run_dir}",
        "eval=kormedmcqa",
        KORMEDMCQA,
        "eval.limit=1",
        "eval.subsets=[doctor,pharm]",
        "eval.use_chat_template=false",
        "eval.max_new_tokens=4",
        "logger=none",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "exact_match" in out.stdout and "doctor" in out.stdout
    assert f"medft: results {run_dir / 'eval' / 'kormedmcqa.json'}" in out.stdout
    result = _check_result(run_dir / "eval" / "kormedmcqa.json", "kormedmcqa")
    assert result["settings"]["use_chat_template"] is False and result["metrics"]["n"] == 2
    # Hydra's job folder sits under outputs/evaluate/, named after the benchmark and the run.
    (job,) = (tmp_path / "outputs" / "evaluate").iterdir()
    assert job.name.endswith("_kormedmcqa_run")
    assert json.loads((job / "eval" / "kormedmcqa.json").read_text())["created"] == result["created"]


def test_base_model(tmp_path):
    result, path = _evaluate(
        ["model=tiny", "eval=pubmedqa_ko", PUBMEDQA, "eval.limit=2", "eval.max_new_tokens=8", "logger=none"], tmp_path
    )
    assert path == tmp_path / "eval" / "pubmedqa_ko.json"
    result = _check_result(path, "pubmedqa_ko")
    assert result["model"] == {"run_dir": None, "model": "tiny", "method": None, "data": None, "is_adapter": False}


def test_pubmedqa_leaves_out_what_the_run_trained_on(run_dir):
    """The run trained on samples/pubmedqa_ko: only that file's test-split items may be scored."""
    from medft.evals.runner import load_data
    from medft.evals.settings import load_benchmark
    from medft.runs.loading import load_run_config

    cfg = load_benchmark("pubmedqa_ko")
    cfg.path = str(PUBMEDQA_TRAIN)
    trained = load_data(cfg, load_run_config(run_dir), trained=True)
    base = load_data(cfg, load_run_config(run_dir), trained=False)
    assert trained.excluded_seen > 0 and len(trained.items) + trained.excluded_seen == len(base.items)


def test_offline_without_a_local_copy_is_one_line(run_dir, tmp_path):
    out = _cli(
        f"run={run_dir}",
        "eval=kormedmcqa",
        "logger=none",
        cwd=tmp_path,
        env_extra={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medft: error: ") and "eval.path" in lines[0], out.stderr


@pytest.mark.parametrize(
    "overrides, error, words",
    [
        (["eval=pubmedqa_ko"], DataError, ["eval.path"]),
        (["eval=kormedmcqa", "eval.subsets=[surgeon]"], ConfigError, ["eval.subsets", "surgeon"]),
        (["eval=heldout", "eval.fewshot=3"], ConfigError, ["eval.fewshot"]),
        (["eval=heldout", "eval.limit=0"], ConfigError, ["eval.limit"]),
        ([], ConfigError, ["eval=", "kormedmcqa"]),
        (["run=/nonexistent/run", "eval=heldout"], ConfigError, ["run=/nonexistent/run"]),
    ],
)
def test_user_errors(tmp_path, overrides, error, words):
    with pytest.raises(error) as raised:
        _evaluate(["logger=none", *overrides], tmp_path)
    message = str(raised.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_argument_check_names_the_eval_key():
    from medft.cli import check_overrides as check_arguments

    with pytest.raises(ConfigError, match="did you mean eval.limit"):
        check_arguments(["eval=heldout", "eval.limt=3"])
    with pytest.raises(ConfigError, match="eval.use_chat_template=maybe"):
        check_arguments(["eval.use_chat_template=maybe"])
    check_arguments(["eval=heldout", "eval.limit=3", "eval.use_chat_template=false", "run=x"])


def test_local_parquet_copy_reads_like_json(tmp_path):
    """A hub-style parquet download (<subset>/<split>-00000-of-00001.parquet) gives the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medft.evals import kormedmcqa
    from medft.evals.settings import load_benchmark

    for split in ("test", "fewshot"):
        rows = json.loads((SAMPLES_DIR / "eval" / "kormedmcqa" / "nurse" / f"{split}.json").read_text(encoding="utf-8"))
        (tmp_path / "nurse").mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "nurse" / f"{split}-00000-of-00001.parquet")
    cfg = load_benchmark("kormedmcqa")
    cfg.subsets, cfg.path = ["nurse"], str(tmp_path)
    from_parquet = kormedmcqa.load_items(cfg)
    cfg.path = str(SAMPLES_DIR / "eval" / "kormedmcqa")
    from_json = kormedmcqa.load_items(cfg)
    assert from_parquet == from_json and len(from_json[0].shots) == 5
    prompt = kormedmcqa.prompt_text(from_json[0].items[0])
    assert prompt.endswith("\nE. " + from_json[0].items[0]["E"] + "\n정답：")


def test_benchmarks_during_training(run_dir):
    """The callback for train.eval_benchmarks_every: results per step; an unreachable benchmark is skipped."""
    from medft.evals.runner import benchmark_callback
    from medft.runs.loading import load_trained

    loaded = load_trained(run_dir)
    callback = benchmark_callback(
        loaded.cfg, run_dir, ["heldout", "kormedmcqa"], every=2, overrides={"limit": 1, "max_new_tokens": 4}
    )
    state = SimpleNamespace(global_step=2, is_world_process_zero=True)
    callback.on_step_end(None, state, None, model=loaded.model, processing_class=loaded.tokenizer)
    result = _check_result(run_dir / "eval" / "heldout.step2.json", "heldout")
    assert result["step"] == 2 and result["metrics"]["n"] == 1
    assert not (run_dir / "eval" / "kormedmcqa.step2.json").exists()  # no hub offline, no local copy


def test_quick_heldout_runs_see_every_source():
    from medft.evals.heldout import interleave_sources

    rows = [
        {"id": f"{s}{i}", "meta": {"source": s}}
        for s, n in (("aihub", 3), ("hira", 1), ("pubmedqa_ko", 2))
        for i in range(n)
    ]
    assert [r["id"] for r in interleave_sources(rows)] == [
        "aihub0",
        "hira0",
        "pubmedqa_ko0",
        "aihub1",
        "pubmedqa_ko1",
        "aihub2",
    ]


def test_end_of_training_uses_the_jobs_eval_settings(run_dir, tmp_path):
    """`train.eval_benchmarks=[kormedmcqa] eval=kormedmcqa eval.path=...`: the local copy is used."""
    from omegaconf import OmegaConf

    from medft.evals.runner import run_benchmarks
    from medft.evals.settings import load_benchmark
    from medft.runs.loading import LoadedModel, load_trained

    loaded = load_trained(run_dir)
    chosen = load_benchmark("kormedmcqa")
    chosen.path, chosen.subsets = str(SAMPLES_DIR / "eval" / "kormedmcqa"), ["doctor"]
    cfg = OmegaConf.merge(loaded.cfg, {"eval": OmegaConf.to_container(chosen, enum_to_str=True)})
    summary = run_benchmarks(
        LoadedModel(cfg, loaded.tokenizer, loaded.model, run_dir, True),
        ["kormedmcqa"],
        tmp_path,
        overrides={"limit": 1, "max_new_tokens": 4},
        progress=False,
    )
    assert summary["kormedmcqa"]["n"] == 1
    _check_result(tmp_path / "kormedmcqa.json", "kormedmcqa")


def test_benchmarks_run_during_and_after_training(tmp_path):
    """train.eval_benchmarks scores at the end (and every N steps) into <run>/eval/ and metrics.json."""
    import json

    from medft.training.pipeline import JobInfo, run_training

    from conftest import compose_config

    cfg = compose_config(
        [
            "logger=none",
            "train.max_steps=2",
            "train.save_strategy=no",
            "train.packing=false",
            "train.eval_benchmarks=[heldout]",
            "train.eval_benchmarks_every=1",
            "eval=heldout",
            "eval.limit=2",
            "eval.max_new_tokens=4",
        ]
    )
    metrics = run_training(cfg, JobInfo(run_dir=tmp_path / "run"))
    assert "heldout" in metrics["benchmarks"] and "error" not in metrics["benchmarks"]["heldout"]
    written = sorted(p.name for p in (tmp_path / "run" / "eval").glob("*.json"))
    assert written == ["heldout.json", "heldout.step1.json", "heldout.step2.json"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["benchmarks"]["heldout"]


def test_unknown_benchmark_fails_before_training(tmp_path):
    from medft.training.pipeline import JobInfo, run_training

    from conftest import compose_config

    with pytest.raises(ConfigError, match="train.eval_benchmarks: kormedmqa is not a benchmark"):
        run_training(
            compose_config(["logger=none", "train.eval_benchmarks=[kormedmqa]"]), JobInfo(run_dir=tmp_path / "r")
        )
    assert not (tmp_path / "r" / "metrics.json").exists()
