"""medft.cli.chat on a tiny trained run: the conversation reaches the model whole, and the terminal works."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medft.runtime.errors import ConfigError
from medft.serving.chat_session import ChatSession, chat_generation_kwargs, check_history, load_model
from medft.training.pipeline import JobInfo, run_training

from conftest import compose_config

TURNS = ["머리가 아파요", "어제부터 열도 나요", "병원에 가야 할까요?"]
_TRAINED: dict[str, Path] = {}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One short training run on the tiny model, shared by test_chat and test_serve."""
    if "run" not in _TRAINED:
        run_dir = tmp_path_factory.mktemp("chat") / "run"
        run_training(
            compose_config(["logger=none", "train.max_steps=2", "train.save_strategy=no"]), JobInfo(run_dir=run_dir)
        )
        _TRAINED["run"] = run_dir
    return _TRAINED["run"]


@pytest.fixture(scope="module")
def loaded(tiny_run):
    cfg = compose_config([f"run={tiny_run}"])
    return load_model(cfg, overrides=[f"run={tiny_run}"])


def _session(loaded, *overrides: str) -> ChatSession:
    chat = compose_config(["chat.max_new_tokens=8", *overrides]).chat
    return ChatSession.from_loaded(loaded, chat)


def test_third_prompt_holds_every_earlier_turn(loaded, monkeypatch):
    """Each reply is generated from the system prompt and the whole conversation so far."""
    from medft.modeling import generate

    seen, streamed = [], []
    real = generate.generate_reply

    def recording(model, tokenizer, messages, gen_kwargs, on_text=None):
        seen.append(
            (
                [dict(m) for m in messages],
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
            )
        )
        return real(model, tokenizer, messages, gen_kwargs, on_text=on_text)

    monkeypatch.setattr(generate, "generate_reply", recording)
    session = _session(loaded)
    replies = [session.reply(turn, on_text=streamed.append).text for turn in TURNS]
    assert len(seen) == 3 and all(replies)
    assert streamed, "on_text received the reply as it was generated"
    messages, prompt = seen[2]
    assert messages[0] == {"role": "system", "content": session.system_prompt}
    assert [m["content"] for m in messages[1:]] == [TURNS[0], replies[0], TURNS[1], replies[1], TURNS[2]]
    for text in [session.system_prompt, *TURNS, *replies[:2]]:
        assert text in prompt
    assert prompt.endswith("[|assistant|]"), "the run's chat template asks for the assistant's turn"
    assert [m["role"] for m in session.history] == ["user", "assistant"] * 3

    session.reset()
    assert session.history == []
    session.reply("새 질문")
    assert [m["content"] for m in seen[-1][0]] == [session.system_prompt, "새 질문"]

    session.set_system_prompt("짧게 답하세요")
    session.reply("또 질문")
    assert seen[-1][0][0] == {"role": "system", "content": "짧게 답하세요"}


def test_chat_settings_override_the_model_defaults(loaded):
    greedy = chat_generation_kwargs(
        loaded.cfg.model, compose_config(["chat.temperature=0", "chat.max_new_tokens=5"]).chat
    )
    assert greedy["do_sample"] is False and greedy["max_new_tokens"] == 5 and "temperature" not in greedy
    sampled = chat_generation_kwargs(loaded.cfg.model, compose_config(["chat.temperature=0.3", "chat.top_p=0.5"]).chat)
    assert sampled["temperature"] == 0.3 and sampled["top_p"] == 0.5
    assert sampled["repetition_penalty"] == loaded.cfg.model.generation.repetition_penalty
    with pytest.raises(ConfigError, match="chat.top_p"):
        _session(loaded, "chat.top_p=0")


def test_oldest_turns_are_dropped_when_the_context_is_full(loaded, monkeypatch):
    session = _session(loaded)
    session.history = [{"role": r, "content": "가" * 300} for r in ("user", "assistant") * 3]
    monkeypatch.setattr(session, "_context_limit", lambda: 700)
    session.reply("지금 질문")
    assert session.dropped_turns >= 1
    assert session.history[-2]["content"] == "지금 질문" and len(session.history) == 8


def test_client_history_must_alternate():
    assert check_history([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], 10)
    for bad in (
        [{"role": "assistant", "content": "b"}],
        [{"role": "user", "content": "a"}],
        "text",
        [{"role": "user", "content": 3}, {"role": "assistant", "content": "b"}],
    ):
        with pytest.raises(ValueError):
            check_history(bad, 10)


# --------------------------------------------------------------------------- the terminal
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\r")


class Terminal:
    """A child process on a pseudo-terminal, read until a pattern shows up."""

    def __init__(self, argv: list[str], cwd: Path):
        self.master, slave = os.openpty()
        env = {**os.environ, "TERM": "dumb", "PYTHONUNBUFFERED": "1"}
        self.stderr = open(cwd / "stderr.txt", "w+")
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdin=slave, stdout=slave, stderr=self.stderr, env=env, close_fds=True
        )
        os.close(slave)
        self.raw = b""

    @property
    def text(self) -> str:
        return _ANSI.sub("", self.raw.decode("utf-8", errors="replace"))

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while self.text.count(pattern) < count:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                self.stderr.seek(0)
                raise AssertionError(
                    f"no {pattern!r} x{count}; transcript:\n{self.text}\nstderr:\n{self.stderr.read()[-3000:]}"
                )
            if select.select([self.master], [], [], min(left, 0.5))[0]:
                try:
                    self.raw += os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    pass
        return self.text

    def send(self, line: str) -> None:
        os.write(self.master, line.encode("utf-8"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)
        self.stderr.close()


def test_terminal_chat_three_turns_reset_and_exit(tiny_run, tmp_path):
    term = Terminal([sys.executable, "-m", "medft.chat", f"run={tiny_run}", "chat.max_new_tokens=8"], tmp_path)
    try:
        term.wait_for("나> ")
        for i, turn in enumerate(TURNS, start=1):
            term.send(turn + "\n")
            term.wait_for("나> ", count=i + 1)
        replies = re.findall(r"도우미> (.*)", term.text)
        assert len(replies) == 3 and all(r.strip() for r in replies), term.text
        term.send("/history\n")
        history = term.wait_for("나> ", count=5).split(TURNS[2] + "\n", 1)[1]
        for turn in TURNS:
            assert f"[나] {turn}" in history
        assert history.count("[도우미] ") == 3
        term.send("/reset\n")
        assert "새 대화를 시작합니다" in term.wait_for("나> ", count=6)
        term.send("/history\n")
        assert "대화 기록 없음" in term.wait_for("나> ", count=7)
        term.send("\x04")  # Ctrl-D at the prompt ends the chat like /exit
        assert term.proc.wait(30) == 0
    finally:
        term.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stderr.txt"], "no output dir, .hydra/ or log file"


def test_missing_run_is_one_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "medft.chat"], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medft: error: "), out.stderr
    assert "run=<dir>" in lines[0] and "model=<name>" in lines[0]
    assert not list(tmp_path.iterdir())


def test_run_and_model_together_is_an_error(tiny_run):
    cfg = compose_config([f"run={tiny_run}", "model=tiny"])
    with pytest.raises(ConfigError, match="not both"):
        load_model(cfg, overrides=[f"run={tiny_run}", "model=tiny"])
    with pytest.raises(ConfigError, match="not a directory"):
        load_model(compose_config(["run=/nonexistent/run"]), overrides=["run=/nonexistent/run"])
