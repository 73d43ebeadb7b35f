"""`medft <command> [overrides]`: one console command for every entrypoint.

`medft train model=exaone data=aihub method=qlora` runs exactly what
`python -m medft.train model=exaone data=aihub method=qlora` runs: the command's module is
executed as ``__main__`` with the remaining arguments, so Hydra, the override checks and
the one-line errors behave the same either way.
"""

from __future__ import annotations

import runpy
import sys

COMMANDS = {
    "train": ("medft.train", "fine-tune a model (one run, or a sweep with -m)"),
    "prepare": ("medft.prepare", "prepare the data only: report, splits, cache"),
    "labels": ("medft.labels", "show which tokens are trained"),
    "evaluate": ("medft.evaluate", "score a run or a model on a benchmark"),
    "export": ("medft.export", "merge and write a shippable model folder"),
    "chat": ("medft.chat", "talk to a run in the terminal"),
    "serve": ("medft.serve", "a local web chat and JSON API"),
    "compare": ("medft.compare", "rank the runs of a sweep"),
}


def usage() -> str:
    lines = ["usage: medft <command> [key=value ...]   (each command has --help)", "", "commands:"]
    lines += [f"  {name:<9} {about}" for name, (_, about) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"medft: error: {name} is not a medft command; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    module = COMMANDS[name][0]
    sys.argv = [f"medft {name}", *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
