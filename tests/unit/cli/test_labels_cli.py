"""`python -m medft.labels`: what a user sees is what the trainer trains."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from contextlib import redirect_stdout

from medft.cli import labels as labels_view
from medft.cli.labels import render_row

from conftest import REPO, compose_config


def _labels(*args):
    return subprocess.run(
        [sys.executable, "-m", "medft.labels", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


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
    assert out.stderr.strip().splitlines() == [
        "medft: error: split=dev does not exist; choose one of: train, validation, test"
    ]


def test_colour_mode_marks_the_same_tokens(tiny_tokenizer):
    example = {"input_ids": tiny_tokenizer("가나다", add_special_tokens=False)["input_ids"], "labels": [-100, 0, 0]}
    example["labels"] = [-100, *example["input_ids"][1:]]
    assert render_row(tiny_tokenizer, example, plain=True) == "가«나다»"
    assert render_row(tiny_tokenizer, example, plain=False) == "\x1b[2m가\x1b[1;32m나다\x1b[0m"


def test_output_piped_into_a_short_reader_ends_quietly():
    """`python -m medft.labels | head -3` must not end in a BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "medft.labels", "n=20", "plain=true"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0 and "Traceback" not in stderr, stderr[-1500:]


def _show(*argv) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        labels_view.show(list(argv))
    return out.getvalue()


def _solar_first_row(solar_dir):
    """The first training row of data=sample and its example, as the trainer builds them for SOLAR."""
    from medft.data import load_datasets
    from medft.modeling.models import load_tokenizer
    from medft.text.labels import build_example
    from medft.text.templates import get_spec

    cfg = compose_config(["model=solar", f"model.path={solar_dir}", "data=sample"])
    row = load_datasets(cfg.data, progress=False)[0]["train"][0]
    example = build_example(load_tokenizer(cfg.model), get_spec("solar"), row["messages"], cfg.train.max_length)
    return row, example


def test_solar_view_prints_korean_as_in_the_data(solar_dir):
    """SOLAR's byte-fallback pieces decode together: the answer is byte-exact, spaces included."""
    row, _ = _solar_first_row(solar_dir)
    answer = row["messages"][-1]["content"]
    assert re.search(r"[가-힣] [가-힣]", answer)
    out = _show("model=solar", f"model.path={solar_dir}", "data=sample", "n=1", "plain=true")
    assert f"«{answer}</s>»" in out and "\ufffd" not in out
    assert f"\n{row['messages'][0]['content']}\n" in out  # the prompt side too


def test_ids_view_shows_every_token_id_with_the_supervised_ones_marked(solar_dir):
    _, example = _solar_first_row(solar_dir)
    out = _show("model=solar", f"model.path={solar_dir}", "data=sample", "n=1", "plain=true", "ids=true")
    line = out.rstrip("\n").splitlines()[-1]
    tokens = line.replace("«", "").replace("»", "").split(" ")
    assert [int(t.split(":", 1)[0]) for t in tokens] == example["input_ids"]
    assert tokens[0] == "1:<s>" and "13:<0x0A>" in tokens
    marked = re.findall(r"«(.*?)»", line)
    supervised = [t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label != -100]
    assert [int(t.split(":", 1)[0]) for m in marked for t in m.split(" ")] == supervised
    assert marked[-1].endswith(" 2:</s>")
