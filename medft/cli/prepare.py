"""python -m medft.prepare data=<option> [overrides]: the data stage of training, alone.

Same config tree and code path as medft.cli.train: reads, cleans, splits and caches the data,
checks it against the benchmarks of train.eval_benchmarks and data.contamination_benchmarks,
writes data_report.json into the run directory and prints a summary table. HIRA
statistics tables (data=hira_csv) are also written out as HIRA JSONL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from medft.cli import prepare_overrides, user_errors
from medft.config import CONF_DIR, register_schemas
from medft.data.report import summary_table
from medft.runtime import console

register_schemas()


def export_tables(cfg: DictConfig, datasets, run_dir: Path) -> list[Path]:
    """hira_csv sources become HIRA JSONL (train/val/test) that data=hira can read."""
    from medft.data.sources.hira_csv import write_jsonl

    written = []
    for name, source in cfg.data.sources.items():
        if source.kind != "hira_csv":
            continue
        by_split = {split: [r for r in datasets[split] if r["meta"]["source"] == name] for split in datasets}
        out = run_dir / "hira_jsonl" / name
        write_jsonl(by_split, out)
        written.append(out)
    return written


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="prepare")
def main(cfg: DictConfig) -> None:
    with user_errors():
        from hydra.core.hydra_config import HydraConfig

        from medft.config import validate
        from medft.data.cache import prepare_data
        from medft.evals.contamination import check_contamination
        from medft.runs import rundir
        from medft.runs.rundir import RunDir
        from medft.runtime.errors import DataError

        validate(cfg)
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            datasets, report = prepare_data(cfg.data)
            check_contamination(cfg, datasets, report)
        except DataError as err:
            if getattr(err, "report", None):
                rundir.write_json(RunDir(run_dir).data_report, err.report)
            raise
        rundir.write_json(RunDir(run_dir).data_report, report)
        exported = export_tables(cfg, datasets, run_dir)
    print(summary_table(report))
    cache = report["cache"]
    state = "reused" if cache["hit"] else "written"
    print(f"medft: cache {state} in {cache['seconds']:.2f} s: {cache['path']}")
    print(f"medft: data report {run_dir / 'data_report.json'}")
    for folder in exported:
        print(f"medft: HIRA JSONL {folder} (use with data=hira data.sources.hira.path={folder})")


def run() -> None:
    """`python -m medft.prepare` and `medft prepare` start here."""
    sys.argv[1:] = console.setup(sys.argv[1:])
    with user_errors():
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
    main()
