"""`python -m medft.labels`: what a user sees is what the trainer trains."""

from __future__ import annotations

import re
import subprocess
import sys

from medft.labels_view import render_row

from conftest import REPO


def _labels(*args):
    return subprocess.run([sys.executable, "-m", "medft.labels", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_default_composition_shows_marked_assistant_turns():
    out = _labels("n=3", "plain=true")
    assert out.returncode == 0, out.stderr[-2000:]
    headers = re.findall(r"^── (\S.*?)  \((\d+) tokens, (\d+) supervised", out.stdout, flags=re.M)
    assert len(headers) == 3
    body = out.stdout.split("\n", 1)[1]  # after the legend line
    marked = re.findall(r"«(.*?)»", body, flags=re.S)
    assert len(marked) == 3 and all(m.endswith("[|endofturn|]") for m in marked)
    assert "[|assistant|]«" in out.stdout  # the role tag itself is not trained


def test_other_split_and_template():
    out = _labels("n=1", "plain=true", "split=validation", "model.chat_template=llama3_1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "template=llama3_1" in out.stdout and "<|eot_id|>»" in out.stdout


def test_bad_split_is_one_line():
    out = _labels("split=dev")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["medft: error: split=dev does not exist; choose one of: train, validation, test"]


def test_colour_mode_marks_the_same_tokens(tiny_tokenizer):
    example = {"input_ids": tiny_tokenizer("가나다", add_special_tokens=False)["input_ids"], "labels": [-100, 0, 0]}
    example["labels"] = [-100, *example["input_ids"][1:]]
    assert render_row(tiny_tokenizer, example, plain=True) == "가«나다»"
    assert render_row(tiny_tokenizer, example, plain=False) == "\x1b[2m가\x1b[1;32m나다\x1b[0m"


def test_output_piped_into_a_short_reader_ends_quietly():
    """`python -m medft.labels | head -3` must not end in a BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "medft.labels", "n=20", "plain=true"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0 and "Traceback" not in stderr, stderr[-1500:]
