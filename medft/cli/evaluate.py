"""python -m medft.evaluate run=<run dir> eval=<benchmark>   (or model=<name> eval=<benchmark>)

Thin entrypoint: Hydra composes conf/evaluate.yaml (the training tree plus the eval
group), medft.evals.runner does the work. Results go to ``<run>/eval/<benchmark>.json``
and to the job folder's ``eval/`` (a base model: only there), a table to stdout, scores to W&B.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from medft.cli import prepare_overrides, user_errors
from medft.config import CONF_DIR, register_schemas
from medft.runtime import console

register_schemas()


def _label(run, model) -> str:
    """Job folders are named after what was evaluated: the run folder's name, else the model."""
    return Path(str(run)).name if run else str(model)


if not OmegaConf.has_resolver("medft_eval_label"):
    OmegaConf.register_new_resolver("medft_eval_label", _label)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    with user_errors():
        from hydra.core.hydra_config import HydraConfig

        from medft.evals.runner import evaluate, format_table

        hc = HydraConfig.get()
        result, path = evaluate(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
    print(format_table(result))
    print(f"medft: results {path}")
    if cfg.run and cfg.logger.backend != "none":
        from medft.cli.summary import wandb_line

        line = wandb_line(Path(str(cfg.run)))  # the run's own W&B run, which the scores went into
        if line:
            print(line)
    headline = next(iter(result["metrics"].values()), None)
    return headline if isinstance(headline, float) else None


def run() -> None:
    """`python -m medft.evaluate` and `medft evaluate` start here."""
    sys.argv[1:] = console.setup(sys.argv[1:])
    with user_errors():
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
    main()
