"""python -m medft.export run=<run dir> [merge=true] [push_to_hub=<repo>] [export.dtype=bfloat16]

Merges a run's LoRA adapter into its base (a QLoRA adapter into the dequantized NF4 weights it
trained against, unless export.merge_base=original), saves safetensors shards, the tokenizer
with the training chat template, a model card and export.json, which records how far the
exported model's logits are from the trained model's. The hub token is read from HF_TOKEN and
is never written anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from medft.cli import fail, prepare_overrides, user_errors
from medft.runs.export import export_run, push, summary
from medft.runtime import console

log = logging.getLogger("medft")


SHORTHANDS = {"merge": "export.merge", "push_to_hub": "export.push_to_hub", "output": "export.output"}


def expand_shorthands(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        out.append(f"{SHORTHANDS[key]}={value}" if sep and key in SHORTHANDS else arg)
    return out


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from medft.config import CONF_DIR, register_schemas

    register_schemas()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("train", overrides=overrides)


@contextlib.contextmanager
def stage_log():
    """Stage lines on stderr while exporting, so a long export is not silent and stdout keeps the summary."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s][medft] %(message)s", datefmt="%H:%M:%S"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    # bitsandbytes notes on every 4-bit load that an optional CPU kernel package is absent; its fallback runs.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def main(argv: list[str]) -> None:
    import warnings

    # A transformers rename the user cannot act on, raised inside peft on every adapter load.
    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6.*", category=FutureWarning)
    overrides = expand_shorthands(argv)
    overrides = prepare_overrides(overrides)
    cfg = _compose(overrides)
    if not cfg.run:
        fail("say which run to export: python -m medft.export run=outputs/runs/<run>")
    run_dir = Path(cfg.run)
    if not run_dir.is_dir():
        fail(f"run={cfg.run} is not a folder")
    with stage_log():
        exported = export_run(run_dir, cfg.export)
        print(summary(exported))
        if cfg.export.push_to_hub:
            log.info("export: uploading to %s", cfg.export.push_to_hub)
            print(f"medft: uploaded to {push(exported.folder, cfg.export.push_to_hub, cfg.export.private)}")


def run() -> None:
    """`python -m medft.export` and `medft export` start here."""
    argv = console.setup(sys.argv[1:])
    console.quiet_known_warnings()  # before the weights load: no "Loading weights" bar
    with user_errors():
        main(argv)
