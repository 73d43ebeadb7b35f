"""python -m medft.compare: ranks run dirs of a sweep or of single runs, from their files alone."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from medft.cli import compare as compare_cli
from medft.runs import compare
from medft.runtime.errors import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def metrics_for(eval_loss, train_loss, *, accuracy=None, gpu=None, rss=1.25, step=24):
    metrics = {
        "train_loss": train_loss,
        "train_loss_first": 7.9,
        "train_loss_mean": train_loss + 0.3,
        "eval_loss_initial": 7.9745,
        "eval_loss": eval_loss,
        "eval_perplexity": None if eval_loss is None else 2.718281828**eval_loss,
        "global_step": step,
        "epochs": 3.0,
        "train_rows": 126,
        "validation_rows": 14,
        "train_supervised_tokens": 20480,
        "runtime_s": 17.25,
        "train_runtime_s": 12.5,
        "peak_memory_gb": gpu,
        "peak_rss_gb": rss,
        "artifact": "adapter",
        "trainable_params": 4096,
        "total_params": 1_000_000,
        "trainable_percent": 0.4096,
    }
    if accuracy is not None:
        metrics["benchmarks"] = {"kormedmcqa": {"accuracy": accuracy, "n": 50}}
    return metrics


def history_for(evals: list[float]) -> list[dict]:
    history = []
    for index, value in enumerate(evals):
        step = index * 8
        if step:
            history.append({"loss": value + 0.1, "learning_rate": 1e-4, "epoch": index, "step": step})
        history.append({"eval_loss": value, "eval_runtime": 0.5, "epoch": index, "step": step})
    return history


def make_run(run: Path, overrides: list[str], *, metrics=None, history=None, failed=None, hydra=True) -> Path:
    """A run dir as medft.cli.train leaves it (only the files compare reads, plus the config)."""
    run.mkdir(parents=True)
    (run / "config.resolved.yaml").write_text("model:\n  name: tiny\n", encoding="utf-8")
    (run / "manifest.json").write_text(json.dumps({"overrides": overrides, "group": "g", "compute": {}}))
    if hydra:
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides), encoding="utf-8")
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    if history is not None:
        (run / "history.json").write_text(json.dumps(history), encoding="utf-8")
    if failed is not None:
        (run / "failed.json").write_text(json.dumps(failed), encoding="utf-8")
    return run


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Four jobs: two finished, one failed, one killed before it wrote metrics; plus the sweep's own files."""
    root = tmp_path / "outputs" / "multirun" / "2026-11-21_01-20-02"
    make_run(
        root / "0_method=lora",
        ["method=lora", "hydra.sweep.dir=elsewhere"],
        metrics=metrics_for(2.0, 1.9, accuracy=0.6),
        history=history_for([7.97, 3.1, 2.0]),
    )
    make_run(
        root / "1_method=freeze",
        ["method=freeze"],
        metrics=metrics_for(1.5, 1.4, accuracy=0.4),
        history=history_for([7.97, 2.6, 1.5]),
    )
    make_run(
        root / "2_method=full",
        ["method=full"],
        failed={
            "error": "CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail",
            "type": "OutOfMemoryError",
            "traceback": "Traceback ...",
        },
    )
    make_run(root / "10_method=qlora", ["method=qlora"])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / "optuna.db").write_bytes(b"SQLite format 3\x00")
    (root / "sweep_summary.json").write_text("{}")
    (root / ".submitit" / "123").mkdir(parents=True)
    (root / ".submitit" / "123" / "log.out").write_text("log")
    return root


@pytest.fixture
def singles(tmp_path) -> list[Path]:
    """Two single runs: one on a GPU known only from its manifest, one without a validation split."""
    runs = tmp_path / "outputs" / "runs"
    gpu = make_run(
        runs / "2026-11-20_10-00-00_exaone_aihub_qlora",
        ["model=exaone", "data=aihub", "method=qlora"],
        metrics=metrics_for(1.8, 1.7, gpu=21.5, step=1200),
        history=history_for([2.9, 1.8]),
        hydra=False,
    )
    no_eval = make_run(
        runs / "2026-11-20_11-00-00_tiny_sample_lora",
        [],
        metrics=metrics_for(None, 7.5),
        history=[{"loss": 7.5, "step": 8}],
    )
    return [gpu, no_eval]


def by_name(runs):
    return {run.name: run for run in runs}


def test_sweep_expands_to_its_jobs_in_job_order_ignoring_other_files(sweep):
    runs = compare.collect_runs([sweep])
    assert [r.name for r in runs] == ["0_method=lora", "1_method=freeze", "2_method=full", "10_method=qlora"]


def test_status_overrides_and_memory_per_run(sweep, singles):
    runs = by_name(compare.collect_runs([sweep, *singles, sweep / "0_method=lora"]))
    assert len(runs) == 6  # a run given twice counts once
    assert {n: r.status for n, r in runs.items()} == {
        "0_method=lora": "ok",
        "1_method=freeze": "ok",
        "2_method=full": "failed",
        "10_method=qlora": "running-or-killed",
        "2026-11-20_10-00-00_exaone_aihub_qlora": "ok",
        "2026-11-20_11-00-00_tiny_sample_lora": "ok",
    }
    assert runs["0_method=lora"].overrides == ["method=lora"]  # hydra.* left out
    assert runs["2026-11-20_10-00-00_exaone_aihub_qlora"].overrides == ["model=exaone", "data=aihub", "method=qlora"]
    assert runs["2_method=full"].error == "CUDA out of memory. Tried to allocate 2.00 GiB"
    assert runs["2026-11-20_10-00-00_exaone_aihub_qlora"].peak_memory() == (21.5, "gpu")
    assert runs["1_method=freeze"].peak_memory() == (1.25, "rss")


def test_ranked_by_eval_loss_lowest_first_unranked_last(sweep, singles, tmp_path):
    runs = compare.collect_runs([sweep, *singles])
    columns, rows = compare.table(runs, "eval_loss")
    assert [r["run"] for r in rows] == [
        "1_method=freeze",
        "2026-11-20_10-00-00_exaone_aihub_qlora",
        "0_method=lora",
        "2_method=full",
        "10_method=qlora",
        "2026-11-20_11-00-00_tiny_sample_lora",
    ]
    assert [r["rank"] for r in rows] == [1, 2, 3, None, None, None]
    assert columns.count("eval_loss") == 1
    assert columns[:4] == ["rank", "run", "status", "overrides"]


def test_dotted_metric_ranks_highest_first_and_gets_a_column(sweep):
    runs = compare.collect_runs([sweep])
    metric = "benchmarks.kormedmcqa.accuracy"
    assert compare.default_direction(metric) == "max"
    columns, rows = compare.table(runs, metric)
    assert columns.index(metric) == 4
    assert [(r["run"], r[metric]) for r in rows[:2]] == [("0_method=lora", 0.6), ("1_method=freeze", 0.4)]
    _, rows = compare.table(runs, metric, "min")
    assert [r["run"] for r in rows[:2]] == ["1_method=freeze", "0_method=lora"]


@pytest.mark.parametrize(
    ("metric", "direction"),
    [
        ("eval_loss", "min"),
        ("eval_perplexity", "min"),
        ("runtime_s", "min"),
        ("benchmarks.pubmedqa_ko.macro_f1", "max"),
        ("benchmarks.heldout.rouge_l", "max"),
        ("exact_match", "max"),
    ],
)
def test_default_direction(metric, direction):
    assert compare.default_direction(metric) == direction


def test_csv_reads_back_with_raw_values(sweep, singles, tmp_path):
    written = compare.write_outputs(compare.collect_runs([sweep, *singles]), tmp_path / "out", "eval_loss")
    with written["csv"].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    first, failed = rows[0], next(r for r in rows if r["status"] == "failed")
    assert (first["rank"], first["run"], first["eval_loss"], first["overrides"]) == (
        "1",
        "1_method=freeze",
        "1.5",
        "method=freeze",
    )
    assert (first["peak_mem_gb"], first["mem_kind"], first["global_step"]) == ("1.25", "rss", "24")
    gpu = next(r for r in rows if r["run"].endswith("exaone_aihub_qlora"))
    assert (gpu["peak_mem_gb"], gpu["mem_kind"]) == ("21.5", "gpu")
    assert gpu["overrides"] == "model=exaone data=aihub method=qlora"
    assert failed["error"] == "CUDA out of memory. Tried to allocate 2.00 GiB"
    assert failed["rank"] == failed["eval_loss"] == ""
    assert float(first["eval_loss_initial"]) == 7.9745


def test_markdown_has_a_header_and_one_line_per_run(sweep, tmp_path):
    written = compare.write_outputs(compare.collect_runs([sweep]), tmp_path / "out", "eval_loss")
    text = written["md"].read_text(encoding="utf-8")
    assert text == written.markdown
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "rank",
        "run",
        "status",
        "overrides",
        "eval_loss_initial",
        "eval_loss",
        "train_loss",
        "global_step",
        "runtime_s",
        "peak_mem_gb",
        "mem_kind",
        "error",
    ]
    assert set(lines[1]) <= {"|", "-"}
    assert len(lines) == 2 + 4
    assert lines[2].startswith("| 1 | 1_method=freeze | ok | method=freeze | 7.9745 | 1.5000 | 1.4000 | 24 |")
    assert "lower is better" in text


def test_markdown_leaves_out_an_empty_error_column(singles, tmp_path):
    written = compare.write_outputs(compare.collect_runs(singles), tmp_path / "out", "train_loss")
    assert "error" not in written.markdown


def test_png_is_drawn_with_one_curve_per_run_with_validation_points(sweep, singles, tmp_path):
    written = compare.write_outputs(compare.collect_runs([sweep, *singles]), tmp_path / "out", "eval_loss")
    assert written["png"].read_bytes()[:8] == PNG_MAGIC
    assert written.curves == 3
    assert written.unplotted == ["2_method=full", "10_method=qlora", "2026-11-20_11-00-00_tiny_sample_lora"]


def test_no_png_when_no_run_has_validation_points(singles, tmp_path):
    written = compare.write_outputs(compare.collect_runs(singles[1:]), tmp_path / "out", "train_loss")
    assert written.curves == 0 and "png" not in written
    assert not (tmp_path / "out" / "compare_loss.png").exists()


def test_legend_adds_overrides_only_when_the_name_lacks_them(sweep, singles):
    runs = by_name(compare.collect_runs([sweep, *singles]))
    assert compare.legend_label(runs["0_method=lora"]) == "0_method=lora"
    label = compare.legend_label(runs["2026-11-20_10-00-00_exaone_aihub_qlora"])
    assert label.startswith("2026-11-20_10-00-00_exaone_aihub_qlora · model=exaone") and len(label) <= 60


def test_malformed_metrics_marks_the_run_unreadable_and_the_rest_goes_on(sweep, tmp_path):
    (sweep / "0_method=lora" / "metrics.json").write_text('{"eval_loss": 1.0,', encoding="utf-8")
    (sweep / "1_method=freeze" / "history.json").write_text("not json", encoding="utf-8")
    runs = by_name(compare.collect_runs([sweep]))
    assert runs["0_method=lora"].status == "unreadable"
    assert runs["0_method=lora"].error.startswith("metrics.json: ")
    written = compare.write_outputs(list(runs.values()), tmp_path / "out", "eval_loss")
    rows = list(csv.DictReader(written["csv"].open(encoding="utf-8")))
    assert [(r["run"], r["status"]) for r in rows][:2] == [("1_method=freeze", "ok"), ("0_method=lora", "unreadable")]
    assert written.curves == 1


def test_unknown_metric_lists_the_available_ones(sweep, tmp_path):
    with pytest.raises(ConfigError) as err:
        compare.write_outputs(compare.collect_runs([sweep]), tmp_path / "out", "eval_los")
    message = str(err.value)
    assert "\n" not in message
    assert "metric=eval_los" in message and "did you mean metric=eval_loss?" in message
    for key in ("eval_loss", "train_loss", "runtime_s", "global_step", "benchmarks.kormedmcqa.accuracy"):
        assert key in message
    assert "artifact" not in message and "peak_memory_gb" not in message  # not numbers here
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match=r"did you mean metric=benchmarks\.kormedmcqa\.accuracy\?"):
        compare.write_outputs(compare.collect_runs([sweep]), tmp_path / "out", "accuracy")


def test_missing_path_and_dir_without_runs(tmp_path):
    with pytest.raises(ConfigError, match="nowhere: no such directory; expected a run dir or a sweep dir"):
        compare.collect_runs([tmp_path / "nowhere"])
    (tmp_path / "empty" / "not_a_run").mkdir(parents=True)
    with pytest.raises(ConfigError, match="empty holds no run dirs"):
        compare.collect_runs([tmp_path / "empty"])


def test_unknown_option_and_bad_direction_are_one_line_errors(sweep, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare_cli.main([str(sweep), "metrc=eval_loss"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("medft: error: metrc=eval_loss: unknown option metrc")
    assert "metric=, out=, direction=" in err
    with pytest.raises(SystemExit):
        compare_cli.main([str(sweep), "direction=up"])
    assert "use direction=min or direction=max" in capsys.readouterr().err


def test_several_dirs_write_to_compare_in_the_working_dir(sweep, singles, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    compare_cli.main([str(sweep / "0_method=lora"), *map(str, singles), "metric=train_loss", "direction=max"])
    out = capsys.readouterr().out
    assert "higher is better" in out
    assert (tmp_path / "compare" / "compare.csv").is_file() and (tmp_path / "compare" / "compare.md").is_file()
    rows = list(csv.DictReader((tmp_path / "compare" / "compare.csv").open(encoding="utf-8")))
    assert [r["train_loss"] for r in rows] == ["7.5", "1.9", "1.7"]
    assert not (sweep / "compare.csv").exists()


def test_entrypoint_prints_the_table_and_writes_next_to_the_sweep(sweep, tmp_path):
    command = [sys.executable, "-m", "medft.compare", str(sweep)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "| rank | run | status | overrides |" in result.stdout
    assert "| 1 | 1_method=freeze |" in result.stdout
    assert "left out of the chart (no validation loss): 2_method=full, 10_method=qlora" in result.stdout
    for name in ("compare.csv", "compare.md", "compare_loss.png"):
        assert f"medft: wrote {sweep / name}" in result.stdout
        assert (sweep / name).is_file()
    assert compare.collect_runs([sweep])[-1].name == "10_method=qlora"  # its own files are not taken for runs


def test_entrypoint_bad_path_is_one_error_line_and_exit_2(tmp_path):
    command = [sys.executable, "-m", "medft.compare", str(tmp_path / "missing")]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("medft: error: ") and "missing" in lines[0]
    assert result.stdout == ""
