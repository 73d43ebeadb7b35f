"""python -m medft.chat run=<run dir> | model=<name> [chat.key=value ...]

A multi-turn terminal chat with a trained run (its tokenizer and chat template) or a base
model, streaming the reply as it is generated. Useful to judge a run by talking to it
before evaluating or serving it; the conversation itself goes through medft.serving.chat_session,
as the web page of medft.serving.server does.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from medft.cli import prepare_overrides, user_errors
from medft.config import CONF_DIR, register_schemas
from medft.runtime import console

register_schemas()

HELP = "명령: /reset 새 대화 · /system <프롬프트> 시스템 프롬프트 변경 · /history 대화 기록 · /exit 종료 (Ctrl-D)"
USER_PROMPT = "나> "
ASSISTANT_PREFIX = "도우미> "


def _print(text: str = "", end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def _read_line() -> str | None:
    """One line from the user; None at end of input (Ctrl-D)."""
    try:
        return input(USER_PROMPT)
    except EOFError:
        _print()
        return None


def command(session, line: str) -> bool:
    """Handle a /command; False when the chat should end."""
    name, _, arg = line.partition(" ")
    if name in ("/exit", "/quit"):
        return False
    if name == "/reset":
        session.reset()
        _print("(새 대화를 시작합니다)")
    elif name == "/system":
        if arg.strip():
            session.set_system_prompt(arg)
            _print("(시스템 프롬프트를 바꿨습니다; 대화 기록은 그대로입니다)")
        else:
            _print(f"(현재 시스템 프롬프트) {session.system_prompt or '없음'}")
    elif name == "/history":
        if not session.history:
            _print("(대화 기록 없음)")
        for turn in session.history:
            who = "나" if turn["role"] == "user" else "도우미"
            _print(f"[{who}] {turn['content']}")
    else:
        _print(HELP)
    return True


def loop(session) -> None:
    """Read, reply, repeat until /exit or end of input."""
    while True:
        try:
            line = _read_line()
        except KeyboardInterrupt:
            _print("\n(종료하려면 /exit 또는 Ctrl-D)")
            continue
        if line is None:
            return
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not command(session, line):
                return
            continue
        _print(ASSISTANT_PREFIX, end="")
        try:
            result = session.reply(line, on_text=lambda text: _print(text, end=""))
        except KeyboardInterrupt:
            _print("\n(답변을 중단했습니다; 이 질문은 기록에 남지 않습니다)")
            continue
        if not result.text:
            _print("(빈 답변)", end="")
        _print()
        if session.dropped_turns:
            _print(f"(모델의 문맥 길이를 넘어 오래된 대화 {session.dropped_turns}턴을 빼고 보냈습니다)")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="chat")
def main(cfg: DictConfig) -> None:
    with user_errors():
        from medft.serving.chat_session import describe, open_session

        loaded, session = open_session(cfg)
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    _print(f"medft chat: {describe(loaded)}")
    _print("답변은 일반적인 건강 정보이며 진단이 아닙니다. 진단과 치료는 반드시 의사의 확인이 필요합니다.")
    _print(HELP)
    loop(session)


def run() -> None:
    """`python -m medft.chat` and `medft chat` start here."""
    sys.argv[1:] = console.setup(sys.argv[1:])
    with user_errors():
        sys.argv[1:] = prepare_overrides(sys.argv[1:])
    main()
