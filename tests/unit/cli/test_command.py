"""`medft <command>`: the console command runs each entrypoint exactly as `python -m medft.<command>`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medft.cli.command import COMMANDS

MEDFT = Path(sys.executable).parent / "medft"


def _medft(*args, cwd=None, env=None):
    if not MEDFT.is_file():
        pytest.fail(f"{MEDFT} is missing: install the package with pip install -e .")
    return subprocess.run(
        [str(MEDFT), *args], cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_every_command_is_a_module_with_a_main_guard():
    for name, (module, _) in COMMANDS.items():
        source = Path(__import__(module, fromlist=["_"]).__file__).read_text(encoding="utf-8")
        assert 'if __name__ == "__main__"' in source, name


def test_usage_and_unknown_command_are_one_screen_and_one_line():
    out = _medft()
    assert out.returncode == 2 and all(name in out.stdout for name in COMMANDS)
    out = _medft("trian")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"medft: error: trian is not a medft command; choose one of: {', '.join(COMMANDS)}"
    ]


def test_prepare_through_the_console_command(tmp_path):
    out = _medft("prepare", "data=sample", f"hydra.run.dir={tmp_path / 'run'}", env={"MEDFT_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "data_report.json").read_text(encoding="utf-8"))
    assert report["sources"], report.keys()
    bad = _medft("train", "model=gpt5")
    assert bad.returncode == 2 and "model=gpt5 is not a model config" in bad.stderr and "Traceback" not in bad.stderr
