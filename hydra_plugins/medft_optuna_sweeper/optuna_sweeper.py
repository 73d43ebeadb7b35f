"""An Optuna ask/tell sweeper: each trial is one medft.cli.train job, launched by Hydra's launcher.

Why not the published Hydra Optuna sweeper: it pins Optuna < 3, and its SQLite storage
fails with SQLAlchemy 2. This one drives current Optuna through ask/tell, so any Hydra
launcher runs the trials (in this process, or one SLURM job per trial with submitit),
the study lives in SQLite in the sweep dir, and running the same command again with
``hydra.sweep.dir=<that dir>`` continues the study where it stopped.

Search space: ``params`` in the sweeper config and/or sweep expressions on the command
line, in Hydra's override syntax: ``choice(8,16,32)``, ``range(1,9,2)``,
``interval(1e-5,1e-3)``, ``tag(log, interval(...))``, ``tag(int, interval(...))``.
Other overrides are passed to every trial unchanged. The trial's value is what the task
returns (medft.cli.train returns the config's ``objective`` metric); a trial returning
nothing (a failed job) is recorded as failed and the study goes on.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("medft")

STUDY_DB = "optuna.db"
BEST = "optuna_best.yaml"


def distribution(override: Override):
    """Hydra sweep expression -> Optuna distribution."""
    import optuna.distributions as dist

    value = override.value()
    tags = getattr(value, "tags", set()) or set()
    if isinstance(value, ChoiceSweep):
        return dist.CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if all(float(x).is_integer() for x in (start, stop, step)):
            start, stop, step = int(start), int(stop), int(step)
            last = start + step * ((stop - start - 1) // step)  # range() excludes its stop
            return dist.IntDistribution(start, last, step=step)
        return dist.CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, IntervalSweep):
        if "int" in tags:
            return dist.IntDistribution(int(value.start), int(value.end), log="log" in tags)
        return dist.FloatDistribution(float(value.start), float(value.end), log="log" in tags)
    raise ValueError(f"{override.input_line}: not a sweep Optuna can search (choice, range or interval)")


def search_space(arguments: list[str], params: dict[str, str] | None) -> tuple[dict[str, Any], list[str]]:
    """The distributions to search and the overrides every trial gets as they are."""
    parser = OverridesParser.create()
    space: dict[str, Any] = {}
    fixed: list[str] = []
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    for override in parser.parse_overrides(lines):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def _format(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        direction: str = "minimize",
        n_trials: int = 20,
        n_jobs: int = 1,
        sampler: str = "tpe",
        seed: int | None = 42,
        study_name: str = "medft",
        storage: str | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction={direction}: use minimize or maximize")
        if sampler not in ("tpe", "random"):
            raise ValueError(f"hydra.sweeper.sampler={sampler}: use tpe or random")
        self.direction, self.n_trials, self.n_jobs = direction, n_trials, max(1, n_jobs)
        self.sampler_name, self.seed, self.study_name, self.storage = sampler, seed, study_name, storage
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _sampler(self):
        import optuna

        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=self.seed)
        return optuna.samplers.TPESampler(seed=self.seed)

    def _study(self, sweep_dir: Path):
        import optuna
        from optuna.trial import TrialState

        storage = self.storage or f"sqlite:///{(sweep_dir / STUDY_DB).resolve()}"
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self._sampler(),
            direction=self.direction,
            load_if_exists=True,
        )
        # Trials left running by a killed sweep: recorded as failed and asked again.
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params)
            log.warning("optuna: trial %d was interrupted; it runs again with the same parameters", trial.number)
        return study

    def sweep(self, arguments: list[str]) -> Any:
        import optuna
        from optuna.trial import TrialState

        assert self.config is not None and self.launcher is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space, fixed = search_space(arguments, self.params)
        if not space:
            raise ValueError(
                "the Optuna sweep has nothing to search: set hydra.sweeper.params or pass "
                "e.g. 'train.learning_rate=tag(log,interval(1e-5,1e-3))'"
            )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study = self._study(sweep_dir)
        finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        # Trials this sweeper ran to the end carry their run dir; interrupted ones do not count.
        done = len([t for t in study.get_trials(deepcopy=False) if t.state in finished and "run_dir" in t.user_attrs])
        if done:
            print(f"medft: optuna study in {sweep_dir / STUDY_DB}: {done} of {self.n_trials} trials already done")
        while done < self.n_trials:
            batch = min(self.n_jobs, self.n_trials - done)
            trials = [study.ask(space) for _ in range(batch)]
            overrides = [tuple(fixed + [f"{k}={_format(v)}" for k, v in t.params.items()]) for t in trials]
            job_idx = min(t.number for t in trials)
            returns = self.launcher.launch(overrides, initial_job_idx=job_idx)
            for trial, ret in zip(trials, returns, strict=True):
                value = _value(ret)
                trial.set_user_attr("run_dir", str(getattr(ret, "working_dir", "") or ""))
                if value is None:
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, value)
            done += batch
        return self._report(study, sweep_dir)

    def _report(self, study, sweep_dir: Path):
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            print("medft: optuna: no trial completed")
            return None
        best = study.best_trial
        result = {
            "objective": self.config.get("objective"),
            "direction": self.direction,
            "best_value": best.value,
            "best_params": best.params,
            "best_trial": best.number,
            "best_run_dir": best.user_attrs.get("run_dir"),
            "trials": len(study.trials),
        }
        OmegaConf.save(OmegaConf.create(result), sweep_dir / BEST)
        shown = " ".join(f"{k}={_format(v)}" for k, v in best.params.items())
        print(f"medft: optuna best {result['objective']}={best.value:.4f} (trial {best.number}): {shown}")
        return result


def _value(ret) -> float | None:
    from hydra.core.utils import JobStatus

    if ret.status != JobStatus.COMPLETED:
        return None
    value = ret.return_value
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
