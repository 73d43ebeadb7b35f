"""Start-up time of the entrypoint: `--help` and `--cfg job` against a bare interpreter.

    .venv/bin/python benchmarks/startup.py [--repeats 5]

Prints the median wall time of each command and its ratio to `python -c pass` measured
in the same run, so the numbers are comparable across machines.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass (baseline)": ["-c", "pass"],
    "python -m medft.train --help": ["-m", "medft.train", "--help"],
    "python -m medft.train --cfg job": ["-m", "medft.train", "--cfg", "job"],
    "... model=exaone data=aihub method=qlora --cfg job": [
        "-m",
        "medft.train",
        "model=exaone",
        "data=aihub",
        "method=qlora",
        "--cfg",
        "job",
    ],
}


def wall_time(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    times = {name: [] for name in COMMANDS}
    for _ in range(repeats):  # alternate so drift hits every command alike
        for name, args in COMMANDS.items():
            times[name].append(wall_time(args))
    base = statistics.median(times["python -c pass (baseline)"])
    print(f"{'command':<55} {'median s':>9} {'vs python':>10}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<55} {median:>9.3f} {median / base:>9.1f}x")


if __name__ == "__main__":
    main()
