"""Run benchmarks on a loaded model: data first, then scoring, a result file, a table, W&B.

Used two ways: ``python -m medft.evaluate`` (one benchmark, :func:`evaluate`) and the end
of training (``train.eval_benchmarks``, :func:`run_benchmarks`, :func:`benchmark_callback`).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from medft.evals import registry
from medft.evals import settings as eval_settings
from medft.evals.benchmark import use_chat_template
from medft.evals.tracking import log_result, start_eval_run
from medft.runs import rundir
from medft.runs.rundir import RunDir
from medft.runtime.console import quiet_known_warnings
from medft.runtime.errors import ConfigError, MedftError

log = logging.getLogger("medft")


def load_data(eval_cfg, model_cfg, trained: bool):
    """The benchmark's items. ``model_cfg`` is the run's (or the base model's) full config;
    ``trained`` says the model was fine-tuned with it, so its training data is known."""
    return registry.benchmark(eval_cfg.kind).load_items(eval_cfg, model_cfg, trained)


def describe_model(loaded) -> dict:
    cfg = loaded.cfg
    method = cfg.method.name if "method" in cfg else None
    return {
        "run_dir": str(loaded.run_dir) if loaded.run_dir else None,
        "model": cfg.model.name,
        "method": str(method) if loaded.run_dir and method is not None else None,
        "data": cfg.data.name if loaded.run_dir else None,
        "is_adapter": loaded.is_adapter,
    }


def score_benchmark(loaded, eval_cfg, data, progress: bool = True) -> dict:
    """Score ``data`` and wrap the numbers with what was scored, how, and by which model."""
    from tqdm.auto import tqdm

    benchmark = registry.benchmark(eval_cfg.kind)
    name = eval_cfg.name
    started = time.perf_counter()
    was_training = loaded.model.training
    loaded.model.eval()
    try:
        with tqdm(total=benchmark.count(data), desc=f"{name}", unit="item", disable=not progress) as bar:
            scored = benchmark.score(loaded, eval_cfg, data, bar)
    finally:
        loaded.model.train(was_training)
    config = OmegaConf.to_container(eval_cfg, resolve=True, enum_to_str=True)
    config["use_chat_template"] = use_chat_template(eval_cfg)
    return {
        "benchmark": name,
        "kind": config["kind"],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
        "model": describe_model(loaded),
        "settings": config,
        "metrics": scored["metrics"],
        "groups": scored.get("groups", {}),
        "skipped": scored.get("skipped", {}),
        "items": scored["items"],
    }


def write_result(out_dir: Path, result: dict, stem: str | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem or RunDir.eval_stem(result['benchmark'])}.json"
    rundir.write_json(path, result)
    return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def _headline(result: dict) -> dict:
    """The metrics less the per-group copies (``exact_match_doctor``), which the group rows show."""
    groups = result.get("groups") or {}
    columns = {c for values in groups.values() for c in values}
    per_group = {f"{c}_{g}" for g in groups for c in columns}
    return {k: v for k, v in result["metrics"].items() if k not in per_group}


def format_table(result: dict) -> str:
    """The headline metrics, then one row per group (subset, label or source)."""
    model = result["model"]
    who = f"run {model['run_dir']}" if model["run_dir"] else f"model={model['model']} (base)"
    lines = [f"{result['benchmark']} · {who} · {result['metrics'].get('n', '?')} items · {result['seconds']:.1f} s"]
    headline = _headline(result)
    width = max(len(k) for k in headline)
    lines += [f"  {k:<{width}}  {_cell(v)}" for k, v in headline.items()]
    groups = result.get("groups") or {}
    if groups:
        columns = list(next(iter(groups.values())))
        name_width = max(8, *(len(g) for g in groups))
        widths = [max(len(c), 8) for c in columns]
        lines.append(
            "  " + f"{'':<{name_width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))
        )
        for group, values in groups.items():
            cells = "  ".join(f"{_cell(values.get(c)):>{w}}" for c, w in zip(columns, widths, strict=True))
            lines.append(f"  {group:<{name_width}}  {cells}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- medft.cli.evaluate
def _trained_config(run: str):
    from medft.runs.loading import load_run_config

    run_dir = Path(run).expanduser()
    if not run_dir.is_dir():
        raise ConfigError(
            f"run={run} is not a directory; pass a training run folder, e.g. "
            "run=outputs/runs/<time>_<model>_<data>_<method>"
        )
    return run_dir, load_run_config(run_dir)


def evaluate(cfg, job_dir: Path, overrides: list[str] = (), progress: bool = True) -> tuple[dict, Path]:
    """The body of ``python -m medft.evaluate``: one benchmark on a run or a base model."""
    quiet_known_warnings()
    if cfg.eval is None:
        raise ConfigError(f"no benchmark chosen; add eval=<name>, one of: {', '.join(eval_settings.benchmark_names())}")
    eval_settings.check(cfg.eval)
    if cfg.run:
        if any(o.split("=", 1)[0].lstrip("+~") == "model" for o in overrides):
            raise ConfigError("run= and model= both given; a run is evaluated with its own model: drop model=")
        run_dir, model_cfg = _trained_config(cfg.run)
        out_dir = RunDir(run_dir).eval_dir
    else:
        from medft.config import validate

        validate(cfg)
        run_dir, model_cfg, out_dir = None, cfg, RunDir(job_dir).eval_dir
    # Data before weights: a missing local copy fails in a second, not after loading an 8B model.
    data = load_data(cfg.eval, model_cfg, trained=run_dir is not None)

    from medft.runs.loading import load_base, load_trained

    loaded = load_trained(run_dir) if run_dir is not None else load_base(cfg)
    name = cfg.eval.name
    config = {
        "eval": OmegaConf.to_container(cfg.eval, resolve=True, enum_to_str=True),
        "run": str(run_dir) if run_dir else None,
        "model": loaded.cfg.model.name,
    }
    wandb_run = start_eval_run(cfg, loaded.cfg.model.name, run_dir, out_dir, name, config)
    exit_code = 1
    try:
        result = score_benchmark(loaded, cfg.eval, data, progress=progress)
        path = write_result(out_dir, result)
        if run_dir is not None:  # the run keeps the latest result; the job folder keeps this one
            write_result(RunDir(job_dir).eval_dir, result)
        log_result(wandb_run, name, result)
        exit_code = 0
        return result, path
    finally:
        if wandb_run is not None:
            wandb_run.finish(exit_code=exit_code)


# --------------------------------------------------------------------------- during training
def run_benchmarks(
    loaded,
    names,
    out_dir: Path,
    wandb_run=None,
    step: int | None = None,
    overrides: dict | None = None,
    progress: bool = True,
) -> dict:
    """Score each named benchmark (conf/eval/<name>.yaml, or the job's ``eval=`` section when
    it names the same benchmark) on a model in memory.

    Results go to ``out_dir/<name>.json`` (``<name>.step<N>.json`` with ``step``) and to
    ``wandb_run``. ``overrides`` (eval keys, e.g. ``{"limit": 50}``) apply to every benchmark:
    quick checks during training.
    A benchmark that cannot run (e.g. its data is unreachable offline) is reported and
    skipped: it must not cost a finished training run. Returns ``{name: metrics}`` or
    ``{name: {"error": message}}``.
    """
    summary: dict[str, dict] = {}
    for name in names:
        try:
            eval_cfg = eval_settings.load_benchmark(str(name), chosen=loaded.cfg.get("eval"))
            for key, value in (overrides or {}).items():
                OmegaConf.update(eval_cfg, key, value, merge=True)
            eval_settings.check(eval_cfg)
            data = load_data(eval_cfg, loaded.cfg, trained=True)
            result = score_benchmark(loaded, eval_cfg, data, progress=progress)
        except MedftError as err:
            log.warning("benchmark %s skipped: %s", name, err)
            summary[str(name)] = {"error": str(err)}
            continue
        if step is not None:
            result["step"] = step
        write_result(out_dir, result, RunDir.eval_stem(str(name), step) if step is not None else None)
        log_result(wandb_run, str(name), result, step)
        log.info("%s", format_table(result))
        summary[str(name)] = result["metrics"]
    return summary


def benchmark_callback(cfg, run_dir: Path, names, every: int, wandb_run=None, overrides: dict | None = None):
    """A TrainerCallback scoring ``names`` every ``every`` optimizer steps (train.eval_benchmarks_every),
    on the model being trained; results go to ``<run>/eval/<name>.step<N>.json`` and W&B."""
    from transformers import TrainerCallback

    from medft.modeling.methods import descriptor
    from medft.runs.loading import LoadedModel

    is_adapter = descriptor(cfg.method.name).adapter

    class BenchmarkCallback(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
            if every > 0 and state.global_step % every == 0 and state.is_world_process_zero:
                loaded = LoadedModel(cfg, processing_class, model, run_dir, is_adapter)
                run_benchmarks(
                    loaded,
                    names,
                    RunDir(run_dir).eval_dir,
                    wandb_run,
                    step=state.global_step,
                    overrides=overrides,
                    progress=False,
                )
            return control

    return BenchmarkCallback()
