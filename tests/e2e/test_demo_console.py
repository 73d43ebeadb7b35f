"""The offline demo's console: one screen of medft's own lines by default, every library's with -v."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

SCREEN = 40  # lines
LIBRARY_NOISE = ("Saving the dataset", "Loading weights", "{'loss'")


def _demo(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "MEDFT_VERBOSE"}
    env["MEDFT_CACHE"] = str(tmp_path / "cache")  # a cold cache: the dataset is saved, the model built
    out = subprocess.run(
        [sys.executable, "-m", "medft.train", f"hydra.run.dir={tmp_path / 'run'}", *args],
        cwd=REPO,
        capture_output=True,
        timeout=900,
        env=env,
    )
    # Bytes, decoded as they are: text mode would turn each bar's \r redraw into a new line.
    out.stdout, out.stderr = out.stdout.decode("utf-8"), out.stderr.decode("utf-8")
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_default_demo_fits_one_screen_and_ends_with_a_summary(tmp_path):
    out = _demo(tmp_path)
    printed = out.stdout + out.stderr
    for noise in LIBRARY_NOISE:
        assert noise not in printed, noise
    assert printed.count("\n") < SCREEN, printed  # a bar redraws its line with \r: one line on a terminal
    summary = [line for line in out.stdout.split("\n") if line.startswith("medft: ")]
    assert summary[0] == f"medft: run dir {tmp_path / 'run'}"
    assert summary[1].startswith("medft: train loss ") and "validation loss" in summary[1]
    assert "samples/s" in summary[2] and "supervised tokens/s" in summary[2] and "peak memory" in summary[2]
    assert summary[3].startswith("medft: W&B run ") and "wandb sync " in summary[3]
    assert "training: 100%" in out.stderr  # medft's own training bar


def test_verbose_demo_shows_the_libraries_again(tmp_path):
    out = _demo(tmp_path, "-v", "train.max_steps=2", "logger=none")
    printed = out.stdout + out.stderr
    assert "Saving the dataset" in printed and "Loading weights" in printed and "{'loss'" in printed
    assert not [line for line in out.stdout.splitlines() if line.startswith("medft: W&B")]  # logger=none
