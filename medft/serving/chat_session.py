"""One conversation with a loaded model, shared by medft.cli.chat (terminal) and medft.serving.server (web).

Both front ends go through :class:`ChatSession`, so the terminal and the web page render the
same prompt with the run's chat template and sample with the same settings: ``cfg.chat``
(temperature, top_p, max_new_tokens) over the model spec's generation defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medft.runtime.errors import ConfigError

ROLES = ("user", "assistant")


def check_chat_config(chat) -> None:
    """Reject chat settings that cannot generate, in one line naming the key."""
    if chat.max_new_tokens < 1:
        raise ConfigError(f"chat.max_new_tokens={chat.max_new_tokens} must be >= 1")
    if chat.temperature < 0:
        raise ConfigError(f"chat.temperature={chat.temperature} must be >= 0 (0 means greedy decoding)")
    if not 0.0 < chat.top_p <= 1.0:
        raise ConfigError(f"chat.top_p={chat.top_p} must be in (0, 1]")
    if not 0 <= chat.port <= 65535:
        raise ConfigError(f"chat.port={chat.port} must be a TCP port in 0..65535 (0: any free port)")


def chat_generation_kwargs(model_cfg, chat) -> dict:
    """The model spec's generation defaults with the chat.* settings on top."""
    from medft.modeling.generate import generation_kwargs

    overrides = {
        "temperature": float(chat.temperature),
        "top_p": float(chat.top_p),
        "max_new_tokens": int(chat.max_new_tokens),
    }
    return generation_kwargs(model_cfg.generation, overrides)


def _given_overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not under Hydra (tests call load_model directly)
        return []


def chosen_target(cfg, overrides: list[str] | None = None) -> str:
    """What to load, as the user named it (`run=<dir>` or `model=<name>`); ConfigError when unclear."""
    overrides = _given_overrides() if overrides is None else overrides
    model_given = any(o.split("=", 1)[0].removeprefix("override ").lstrip("+") == "model" for o in overrides)
    if cfg.run is None and not model_given:
        raise ConfigError("nothing to chat with: give a training run with run=<dir> or a base model with model=<name>")
    if cfg.run is not None and model_given:
        raise ConfigError("give run=<dir> or model=<name>, not both: a run loads the model it was trained on")
    if cfg.run is not None:
        if not Path(cfg.run).expanduser().is_dir():
            raise ConfigError(f"run={cfg.run} is not a directory; pass a run directory printed by medft.train")
        return f"run={cfg.run}"
    return f"model={cfg.model.name}"


def load_model(cfg, overrides: list[str] | None = None):
    """The model to talk to: the trained model of `run=`, or the base model of `model=`."""
    from medft.runs.loading import load_base, load_trained
    from medft.runtime.console import quiet_known_warnings

    chosen_target(cfg, overrides)
    quiet_known_warnings()
    if cfg.run is not None:
        return load_trained(Path(cfg.run).expanduser())
    from medft.config import validate

    validate(cfg)
    return load_base(cfg)


def describe(loaded) -> str:
    """What is loaded, for the banner: the run directory or the base model's name."""
    if loaded.run_dir is not None:
        return f"run {loaded.run_dir} ({loaded.cfg.model.name}, {loaded.cfg.method.name})"
    return f"model {loaded.cfg.model.name} (base, not fine-tuned)"


@dataclass
class ChatSession:
    """History, system prompt and sampling settings of one conversation."""

    model: Any
    tokenizer: Any
    gen_kwargs: dict
    system_prompt: str | None = None
    history: list[dict] = field(default_factory=list)
    # Oldest turns left out of the last prompt because the model's context was full.
    dropped_turns: int = 0

    @classmethod
    def from_loaded(cls, loaded, chat) -> ChatSession:
        check_chat_config(chat)
        kwargs = chat_generation_kwargs(loaded.cfg.model, chat)
        return cls(loaded.model, loaded.tokenizer, kwargs, chat.system_prompt or None)

    def fork(self, history: list[dict] | None = None) -> ChatSession:
        """A new conversation on the same model and settings (one per web request)."""
        return ChatSession(self.model, self.tokenizer, dict(self.gen_kwargs), self.system_prompt, list(history or []))

    def reset(self) -> None:
        self.history.clear()
        self.dropped_turns = 0

    def set_system_prompt(self, text: str | None) -> None:
        self.system_prompt = (text or "").strip() or None

    def messages(self, user_text: str | None = None) -> list[dict]:
        """The conversation as the chat template receives it."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages += self.history
        if user_text is not None:
            messages.append({"role": "user", "content": user_text})
        return messages

    def _context_limit(self) -> int | None:
        config = getattr(self.model, "config", None)
        return getattr(config, "max_position_embeddings", None)

    def _fit(self, user_text: str) -> list[dict]:
        """Drop the oldest turns until the prompt plus the reply fits the model's context."""
        from medft.text.labels import encode_prompt

        limit = self._context_limit()
        start = 0
        messages = self.messages(user_text)
        if not limit:
            return messages
        budget = limit - int(self.gen_kwargs["max_new_tokens"])
        system = messages[:1] if self.system_prompt else []
        while start < len(self.history):
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if len(encode_prompt(self.tokenizer, prompt)) <= budget:
                break
            start += 2  # one user turn and its reply
            messages = system + self.history[start:] + [{"role": "user", "content": user_text}]
        self.dropped_turns = min(start, len(self.history)) // 2
        return messages

    def reply(self, user_text: str, on_text: Callable[[str], None] | None = None):
        """Generate the assistant's answer to `user_text` and add both turns to the history.

        The turns are recorded only when generation finishes, so an interrupted reply
        (Ctrl-C, a closed browser) leaves the conversation as it was.
        """
        from medft.modeling import generate

        user_text = user_text.strip()
        if not user_text:
            raise ValueError("empty message")
        messages = self._fit(user_text)
        result = generate.generate_reply(self.model, self.tokenizer, messages, self.gen_kwargs, on_text=on_text)
        self.history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": result.text}]
        return result


def check_history(history: Any, max_chars: int) -> list[dict]:
    """A client-sent history as a list of alternating user/assistant turns, or ValueError."""
    if not isinstance(history, list):
        raise ValueError("history must be a list of {role, content} turns")
    turns = []
    for i, turn in enumerate(history):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise ValueError(f"history[{i}] must be an object with a string content")
        role = turn.get("role")
        if role != ROLES[i % 2]:
            raise ValueError(f"history[{i}].role must be {ROLES[i % 2]!r}: turns alternate user, assistant")
        if len(turn["content"]) > max_chars:
            raise ValueError(f"history[{i}] is longer than {max_chars} characters")
        turns.append({"role": role, "content": turn["content"]})
    if len(turns) % 2:
        raise ValueError("history must end with an assistant turn")
    return turns


def open_session(cfg) -> tuple[Any, ChatSession]:
    """What chat and serve both do first: check `chat.*`, load the run or model, start a conversation."""
    import sys

    check_chat_config(cfg.chat)
    print(f"medft: loading {chosen_target(cfg)} ...", file=sys.stderr, flush=True)
    loaded = load_model(cfg)
    return loaded, ChatSession.from_loaded(loaded, cfg.chat)
