"""Files of a run directory: resolved config, manifest, metrics, history, loss plot.

Everything a later reader (compare, export, a colleague) needs to know what ran,
written as plain JSON/YAML next to the weights. :class:`RunDir` owns every file name.
"""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class RunDir:
    """Where each file of a run directory is: ``RunDir(path).metrics`` is its metrics.json.

    An exported model folder follows the same names for what it shares with a run
    (README.md, export.json).
    """

    CONFIG = "config.resolved.yaml"
    MANIFEST = "manifest.json"
    METRICS = "metrics.json"
    HISTORY = "history.json"
    DATA_REPORT = "data_report.json"
    PREFLIGHT = "preflight.json"
    LOSS_PLOT = "loss.png"
    README = "README.md"
    EXPORT = "export.json"
    FAILED = "failed.json"
    EVAL_STEP0 = "eval_step0.json"
    CHECKPOINTS = "checkpoints"
    EVAL = "eval"
    MERGED = "merged"
    HYDRA = ".hydra"
    HYDRA_OVERRIDES = "overrides.yaml"
    # A folder holding any of these is a run of medft (finished, failed or under way).
    MARKERS = (CONFIG, METRICS, FAILED)

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def manifest(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def history(self) -> Path:
        return self.path / self.HISTORY

    @property
    def data_report(self) -> Path:
        return self.path / self.DATA_REPORT

    @property
    def preflight(self) -> Path:
        return self.path / self.PREFLIGHT

    @property
    def loss_plot(self) -> Path:
        return self.path / self.LOSS_PLOT

    @property
    def readme(self) -> Path:
        return self.path / self.README

    @property
    def export_info(self) -> Path:
        return self.path / self.EXPORT

    @property
    def failed(self) -> Path:
        return self.path / self.FAILED

    @property
    def eval_step0(self) -> Path:
        return self.path / self.EVAL_STEP0

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def eval_dir(self) -> Path:
        return self.path / self.EVAL

    @property
    def merged(self) -> Path:
        """Where export writes the shippable model unless told otherwise."""
        return self.path / self.MERGED

    @property
    def hydra_overrides(self) -> Path:
        return self.path / self.HYDRA / self.HYDRA_OVERRIDES

    @property
    def adapter(self) -> Path:
        from medft.modeling.methods import ADAPTER_FOLDER

        return self.path / ADAPTER_FOLDER

    @property
    def model(self) -> Path:
        from medft.modeling.methods import MODEL_FOLDER

        return self.path / MODEL_FOLDER

    def artifact(self, method: Any) -> Path:
        """The folder the weights of a run trained with ``method`` (a method name) are saved in."""
        from medft.modeling.methods import descriptor

        return self.path / descriptor(method).artifact

    def saved_weights(self) -> tuple[Path, bool] | None:
        """``(folder, is_adapter)`` of the first artifact folder holding safetensors, adapters first."""
        from medft.modeling.methods import METHODS, artifact_folders

        adapters = {d.artifact: d.adapter for d in METHODS.values()}
        for name in artifact_folders():
            folder = self.path / name
            if folder.is_dir() and any(folder.glob("*.safetensors")):
                return folder, adapters[name]
        return None

    def is_run(self) -> bool:
        return any((self.path / name).is_file() for name in self.MARKERS)

    @staticmethod
    def eval_stem(benchmark: str, step: int | None = None) -> str:
        """``<benchmark>`` for a final score, ``<benchmark>.step<N>`` for one taken during training."""
        return f"{benchmark}.step{step}" if step is not None else benchmark

    @staticmethod
    def is_step_result(path: Path) -> bool:
        return ".step" in path.stem

    def eval_result(self, benchmark: str, step: int | None = None) -> Path:
        return self.eval_dir / f"{self.eval_stem(benchmark, step)}.json"

    def final_eval_results(self) -> list[Path]:
        """``eval/<benchmark>.json`` files in name order, the step scores left out."""
        return sorted(p for p in self.eval_dir.glob("*.json") if not self.is_step_result(p))


PACKAGES = (
    "medft",
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "bitsandbytes",
    "wandb",
    "hydra-core",
    "omegaconf",
    "safetensors",
    "tokenizers",
)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (in a sweep: of all jobs before it too)."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib / 2**20, 3)


def git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    from importlib import metadata  # ~20 ms, only when a manifest is written: kept off the --help path

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def command_line() -> str:
    """How the job was started, as the user would type it (``python -m medft.train ...``)."""
    entry = Path(sys.argv[0])
    package = Path(__file__).resolve().parents[1]
    head = f"python -m medft.{entry.stem}" if entry.resolve().parent == package else f"python {entry.name}"
    return " ".join([head, *(shlex.quote(a) for a in sys.argv[1:])])


def manifest(extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        **extra,
    }


def plot_loss(history: list[dict], path: Path, title: str) -> bool:
    """Training and validation loss against optimizer step; False when there is nothing to plot."""
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals, strict=True), label="validation loss", color="tab:orange", marker="o")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
