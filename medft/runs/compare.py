"""The runs of a sweep, or several runs, side by side: read from their run directories alone.

Each run becomes a RunSummary (config overrides, metrics, status); runs are ranked by one metric,
with failed, unfinished and unreadable ones last, and written as compare.csv, compare.md and a
validation-loss chart. The command around it is medft.cli.compare.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medft.runs.rundir import RunDir
from medft.runtime.errors import ConfigError

RUN_MARKERS = RunDir.MARKERS
OPTIONS = ("metric", "out", "direction")
HIGHER_IS_BETTER = ("accuracy", "f1", "rouge", "exact", "score")
STANDARD_COLUMNS = ("eval_loss_initial", "eval_loss", "train_loss", "global_step", "runtime_s")
ERROR_WIDTH = 120
LEGEND_WIDTH = 60


@dataclass
class RunSummary:
    """What one run dir says about its job; ``metrics`` is empty unless status is ``ok``."""

    path: Path
    status: str  # ok | failed | running-or-killed | unreadable
    overrides: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def value(self, metric: str) -> Any:
        """The metric's value, by literal key first and then as a dotted path into nested dicts."""
        if metric in self.metrics:
            return self.metrics[metric]
        node: Any = self.metrics
        for part in metric.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def number(self, metric: str) -> float | None:
        """The metric when it is a finite number: only those can be ranked."""
        value = self.value(metric)
        if _is_number(value) and math.isfinite(value):
            return value
        return None

    def peak_memory(self) -> tuple[float | None, str]:
        """GPU peak when the job ran on CUDA, else the process RSS peak (older runs have neither on CPU)."""
        if self.metrics.get("peak_memory_gb") is not None:
            return self.metrics["peak_memory_gb"], "gpu"
        if self.metrics.get("peak_rss_gb") is not None:
            return self.metrics["peak_rss_gb"], "rss"
        return None, ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- collect
def is_run_dir(path: Path) -> bool:
    return path.is_dir() and RunDir(path).is_run()


def _job_order(path: Path) -> tuple:
    """Sweep jobs sort by their number (2_ before 10_), anything else by name."""
    match = re.match(r"(\d+)_", path.name)
    return (0, int(match.group(1)), path.name) if match else (1, 0, path.name)


def expand(path: Path) -> list[Path]:
    """A run dir stands for itself; a sweep dir for the run dirs directly inside it."""
    if not path.exists():
        raise ConfigError(f"{path}: no such directory; expected a run dir or a sweep dir (outputs/multirun/<time>)")
    if not path.is_dir():
        raise ConfigError(f"{path} is not a directory; expected a run dir or a sweep dir (outputs/multirun/<time>)")
    if is_run_dir(path):
        return [path]
    runs = sorted((p for p in path.iterdir() if is_run_dir(p)), key=_job_order)
    if not runs:
        raise ConfigError(f"{path} holds no run dirs; expected {', '.join(RUN_MARKERS)} in it or in its subdirectories")
    return runs


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _first_line(text: str, width: int = ERROR_WIDTH) -> str:
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


def read_overrides(run: Path) -> list[str]:
    """The job's command-line overrides as Hydra recorded them, without Hydra's own settings."""
    items: Any = None
    hydra_file = RunDir(run).hydra_overrides
    if hydra_file.is_file():
        import yaml

        try:
            items = yaml.safe_load(hydra_file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            items = None
    manifest = RunDir(run).manifest
    if not isinstance(items, list) and manifest.is_file():
        try:
            items = _read_json(manifest).get("overrides")
        except (ValueError, OSError, AttributeError):
            items = None
    if not isinstance(items, list):
        return []
    return [str(item) for item in items if not str(item).startswith("hydra.")]


def _read_object(path: Path) -> tuple[dict | None, str | None]:
    """A JSON object from the file, or None and why not."""
    try:
        data = _read_json(path)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        return None, f"{path.name}: {err}"
    if not isinstance(data, dict):
        return None, f"{path.name}: not a JSON object"
    return data, None


def load_run(path: Path) -> RunSummary:
    """One run dir; a file that cannot be parsed makes the run ``unreadable``, never an exception."""
    run = RunSummary(path=path, status="running-or-killed", overrides=read_overrides(path))
    folder = RunDir(path)
    for file in (folder.failed, folder.metrics):
        if not file.is_file():
            continue
        data, problem = _read_object(file)
        if data is None:
            run.status, run.error = "unreadable", _first_line(problem)
        elif file == folder.failed:
            run.status = "failed"
            run.error = _first_line(data.get("error") or data.get("type") or "no error message recorded")
        else:
            run.status, run.metrics = "ok", data
        break
    history = folder.history
    if history.is_file():
        try:
            entries = _read_json(history)
        except (ValueError, OSError, UnicodeDecodeError):
            entries = []  # the table does not need it; the plot leaves the run out
        run.history = [h for h in entries if isinstance(h, dict)] if isinstance(entries, list) else []
    return run


def collect_runs(paths: list[str | Path]) -> list[RunSummary]:
    """Every run under the given run or sweep dirs, each once, in the order given."""
    seen: set[Path] = set()
    runs = []
    for given in paths:
        for path in expand(Path(given)):
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(load_run(path))
    return runs


# --------------------------------------------------------------------------- rank
def default_direction(metric: str) -> str:
    """Accuracy-like scores grow, losses and costs shrink."""
    last = metric.rsplit(".", 1)[-1].lower()
    return "max" if any(word in last for word in HIGHER_IS_BETTER) else "min"


def available_metrics(runs: list[RunSummary]) -> list[str]:
    """Numeric keys of the runs' metrics.json, nested ones (benchmarks) as dotted paths."""
    found: set[str] = set()

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif _is_number(value):
                found.add(prefix + key)

    for run in runs:
        walk(run.metrics, "")
    return sorted(found, key=lambda k: (k.count("."), k))


def check_metric(runs: list[RunSummary], metric: str) -> None:
    """A metric no finished run reports is a typo or the wrong name: say which ones exist."""
    finished = [run for run in runs if run.metrics]
    if not finished or any(run.number(metric) is not None for run in finished):
        return  # nothing finished yet: the table still shows where each job stands
    keys = available_metrics(finished)
    close = [k for k in keys if k.endswith("." + metric)] or difflib.get_close_matches(metric, keys, n=1)
    hint = f"did you mean metric={close[0]}? " if close else ""
    raise ConfigError(f"metric={metric} is in no run's metrics.json; {hint}available: {', '.join(keys) or 'none'}")


def rank_runs(runs: list[RunSummary], metric: str, direction: str | None = None) -> list[RunSummary]:
    """Best first; runs without the metric (failed, unfinished, unreadable) last, in their given order."""
    direction = direction or default_direction(metric)
    if direction not in ("min", "max"):
        raise ConfigError(f"direction={direction} is not valid; use direction=min or direction=max")
    sign = -1 if direction == "max" else 1

    def key(item: tuple[int, RunSummary]) -> tuple:
        index, run = item
        value = run.number(metric)
        return (1, 0.0, index) if value is None else (0, sign * value, index)

    return [run for _, run in sorted(enumerate(runs), key=key)]


def columns_for(metric: str) -> list[str]:
    extra = [] if metric in STANDARD_COLUMNS else [metric]
    return ["rank", "run", "status", "overrides", *extra, *STANDARD_COLUMNS, "peak_mem_gb", "mem_kind", "error"]


def table(runs: list[RunSummary], metric: str, direction: str | None = None) -> tuple[list[str], list[dict]]:
    """Columns and one dict of raw values per run, ranked; ``rank`` is empty for unranked runs."""
    check_metric(runs, metric)
    rows = []
    rank = 0
    for run in rank_runs(runs, metric, direction):
        ranked = run.number(metric) is not None
        if ranked:
            rank += 1
        memory, kind = run.peak_memory()
        row = {
            "rank": rank if ranked else None,
            "run": run.name,
            "status": run.status,
            "overrides": " ".join(run.overrides),
            metric: run.value(metric),
            **{name: run.metrics.get(name) for name in STANDARD_COLUMNS},
            "peak_mem_gb": memory,
            "mem_kind": kind,
            "error": run.error,
        }
        rows.append(row)
    return columns_for(metric), rows


# --------------------------------------------------------------------------- write
def format_cell(value: Any) -> str:
    """Markdown cell: integers as they are, other numbers to four decimals, text without pipes."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool) or not _is_number(value):
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return text.replace("|", "\\|").replace("\n", " ")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size >= 1000:
        return f"{value:.1f}"
    if size and size < 0.001:
        return f"{value:.4g}"
    return f"{value:.4f}"


def markdown_table(columns: list[str], rows: list[dict], metric: str, direction: str | None = None) -> str:
    """The ranked table with a caption line; the error column only when some run has an error."""
    if not any(row.get("error") for row in rows):
        columns = [c for c in columns if c != "error"]
    direction = direction or default_direction(metric)
    better = "higher" if direction == "max" else "lower"
    lines = [
        f"Runs ranked by `{metric}` ({better} is better).",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(format_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(columns: list[str], rows: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})


def legend_label(run: RunSummary) -> str:
    """Run name, plus its overrides when the name does not already spell them (single runs)."""
    from medft.config import slug

    label = run.name
    joined = ",".join(run.overrides)
    if joined and slug(joined) not in run.name:
        label += f" · {' '.join(run.overrides)}"
    return label if len(label) <= LEGEND_WIDTH else label[: LEGEND_WIDTH - 1] + "…"


def validation_points(run: RunSummary) -> list[tuple[float, float]]:
    return [
        (h["step"], h["eval_loss"]) for h in run.history if _is_number(h.get("step")) and _is_number(h.get("eval_loss"))
    ]


def plot_curves(runs: list[RunSummary], path: Path, title: str = "validation loss") -> int:
    """Validation loss of every run against optimizer step; returns the number of curves drawn (0: no file)."""
    curves = [(run, points) for run in runs if (points := validation_points(run))]
    if not curves:
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    colors = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for index, (run, points) in enumerate(curves):
        style = "-" if index < 20 else "--"
        ax.plot(
            *zip(*points, strict=True),
            label=legend_label(run),
            color=colors(index % 20),
            marker="o",
            markersize=3,
            linestyle=style,
        )
    drawn = len(ax.get_lines())
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return drawn


class Outputs(dict):
    """Paths written, by kind (csv, md, png); ``curves`` and ``unplotted`` say what the chart holds."""

    def __init__(self) -> None:
        super().__init__()
        self.curves = 0
        self.unplotted: list[str] = []
        self.markdown = ""


def write_outputs(rows: list[RunSummary], out_dir: Path, metric: str, direction: str | None = None) -> Outputs:
    """compare.csv, compare.md and compare_loss.png in out_dir (the PNG only when a run has validation points)."""
    out_dir = Path(out_dir)
    columns, table_rows = table(rows, metric, direction)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = Outputs()
    written.markdown = markdown_table(columns, table_rows, metric, direction)
    written["csv"] = out_dir / "compare.csv"
    write_csv(columns, table_rows, written["csv"])
    written["md"] = out_dir / "compare.md"
    written["md"].write_text(written.markdown, encoding="utf-8")
    ranked = rank_runs(rows, metric, direction)
    written.unplotted = [run.name for run in ranked if not validation_points(run)]
    parents = {run.path.parent.name for run in rows}
    title = f"validation loss · {parents.pop()}" if len(parents) == 1 else "validation loss"
    png = out_dir / "compare_loss.png"
    written.curves = plot_curves(ranked, png, title)
    if written.curves:
        written["png"] = png
    return written


# --------------------------------------------------------------------------- cli
