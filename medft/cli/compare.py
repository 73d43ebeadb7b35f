"""`python -m medft.compare <dir> [<dir> ...] [metric=eval_loss] [out=<folder>] [direction=min|max]`

Ranks the runs of a sweep (``outputs/multirun/<time>/``) or several single runs
(``outputs/runs/<run>/``) by one metric, from their run directories alone: no W&B, no
network, no model. Writes ``compare.csv`` (raw values, for scripts), ``compare.md`` (the
table as printed) and ``compare_loss.png`` (validation loss of every run on one chart).
Failed, unfinished and unreadable runs stay in the table, last, so a sweep can be read
while it is still running.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medft.runs.compare import OPTIONS, collect_runs, default_direction, is_run_dir, write_outputs
from medft.runtime import console
from medft.runtime.errors import ConfigError


def parse_args(argv: list[str]) -> tuple[list[Path], dict[str, str]]:
    """Paths and key=value options; a word with '=' is a path only when it looks like one."""
    paths, options = [], {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in OPTIONS:
            if not value:
                raise ConfigError(f"{key}= needs a value, e.g. metric=eval_loss out=compare direction=min")
            options[key] = value
        elif sep and "/" not in key and not Path(arg).exists():
            raise ConfigError(
                f"{arg}: unknown option {key} (and no such directory); allowed: {', '.join(o + '=' for o in OPTIONS)} "
                "and run or sweep dirs"
            )
        else:
            paths.append(Path(arg))
    if not paths:
        raise ConfigError(
            "no run dir given; usage: python -m medft.compare <dir> [<dir> ...] [metric=eval_loss] "
            "[out=<folder>] [direction=min|max]"
        )
    return paths, options


def compare(argv: list[str]) -> None:
    paths, options = parse_args(argv)
    metric = options.get("metric", "eval_loss")
    direction = options.get("direction") or default_direction(metric)
    if direction not in ("min", "max"):
        raise ConfigError(f"direction={direction} is not valid; use direction=min or direction=max")
    runs = collect_runs(paths)
    if "out" in options:
        out_dir = Path(options["out"])
    elif len(paths) == 1 and not is_run_dir(paths[0]):
        out_dir = paths[0]  # one sweep: the summary sits next to its jobs
    else:
        out_dir = Path("compare")
    written = write_outputs(runs, out_dir, metric, direction)
    print(written.markdown)
    if written.unplotted and written.curves:
        print(f"medft: left out of the chart (no validation loss): {', '.join(written.unplotted)}")
    elif written.unplotted:
        print("medft: no run has validation loss points; no chart written")
    for path in written.values():
        print(f"medft: wrote {path}")


def main(argv: list[str] | None = None) -> None:
    from medft.cli import user_errors

    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__.strip())
        return
    try:
        with user_errors():
            compare(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader has seen enough
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run() -> None:
    """`python -m medft.compare` and `medft compare` start here."""
    main(console.setup(sys.argv[1:]))
