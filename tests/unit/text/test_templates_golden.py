"""Golden tests: medft's templates render byte for byte what the official Jinja renders, and the
label mask of every token is the one the format prescribes."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
import trl

from medft.cli.labels import render_row
from medft.text.labels import build_example
from medft.text.templates import load_template

from conftest import wear_template

# The official templates, as the models' tokenizer_config.json carry them.
OFFICIAL = {
    "exaone3_5": (
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}{{ '[|system|][|endofturn|]\\n' }}"
        "{% endif %}{{ '[|' + message['role'] + '|]' + message['content'] }}"
        "{% if message['role'] == 'user' %}{{ '\\n' }}{% else %}{{ '[|endofturn|]\\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}"
    ),
    "solar": (
        "{% for message in messages %}{% if message['role'] == 'system' %}"
        "{% if message['content']%}{{'### System:\\n' + message['content']+'\\n\\n'}}{% endif %}"
        "{% elif message['role'] == 'user' %}{{'### User:\\n' + message['content']+'\\n\\n'}}"
        "{% elif message['role'] == 'assistant' %}{{'### Assistant:\\n'  + message['content']}}{% endif %}"
        "{% if loop.last and add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}{% endfor %}"
    ),
    # Llama 3.1's (with its tool-calling branches) as kept verbatim by TRL for identity checks.
    "llama3_1": (Path(trl.__file__).parent / "chat_templates" / "llama3_1.jinja").read_text(),
}

SYSTEM = {"role": "system", "content": "당신은 환자의 질문에 답하는 의료 상담 도우미입니다."}
TURNS = [
    (
        {"role": "user", "content": "어제부터 목이 아프고 열이 나요."},
        {"role": "assistant", "content": "열은 몇 도까지 올랐나요? 기침도 있으신가요?"},
    ),
    (
        {"role": "user", "content": "38도 정도이고 기침은 없어요."},
        {"role": "assistant", "content": "인후염일 가능성이 있습니다. 물을 자주 드시고 쉬세요."},
    ),
    (
        {"role": "user", "content": "약국 약을 먹어도 되나요?"},
        {"role": "assistant", "content": "해열진통제는 도움이 되지만, 사흘 넘게 열이 나면 진료를 받으세요."},
    ),
]
CONVERSATIONS = {
    "one-turn": [*TURNS[0]],
    "system-one-turn": [SYSTEM, *TURNS[0]],
    "three-turns": [m for t in TURNS for m in t],
    "system-three-turns": [SYSTEM, *[m for t in TURNS for m in t]],
}


def official_render(name: str, messages) -> str:
    """The official template through plain jinja2, configured as transformers configures it."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = lambda message: (_ for _ in ()).throw(jinja2.TemplateError(message))
    return env.from_string(OFFICIAL[name]).render(
        messages=messages, add_generation_prompt=False, bos_token="<|begin_of_text|>"
    )


def expected_view(name: str, messages) -> str:
    """What each format prescribes, written out by hand: «trained», the rest not."""
    out = []
    if name == "exaone3_5":
        if messages[0]["role"] != "system":
            out.append("[|system|][|endofturn|]\n")
        for m in messages:
            if m["role"] == "system":
                out.append(f"[|system|]{m['content']}[|endofturn|]\n")
            elif m["role"] == "user":
                out.append(f"[|user|]{m['content']}\n")
            else:
                out.append(f"[|assistant|]«{m['content']}[|endofturn|]»\n")
    elif name == "llama3_1":
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        out.append(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            f"Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{system}<|eot_id|>"
        )
        for m in messages:
            if m["role"] == "user":
                out.append(f"<|start_header_id|>user<|end_header_id|>\n\n{m['content']}<|eot_id|>")
            elif m["role"] == "assistant":
                out.append(f"<|start_header_id|>assistant<|end_header_id|>\n\n«{m['content']}<|eot_id|>»")
    else:  # solar: no end of turn in the template; medft appends </s> to every answer
        for m in messages:
            if m["role"] == "system":
                out.append(f"### System:\n{m['content']}\n\n")
            elif m["role"] == "user":
                out.append(f"### User:\n{m['content']}\n\n")
            else:
                out.append(f"### Assistant:\n«{m['content']}</s>»")
    return "".join(out)


@pytest.fixture(params=sorted(OFFICIAL))
def wearing(request, tiny_tokenizer):
    return wear_template(tiny_tokenizer, request.param)


def test_shipped_templates_are_the_official_text():
    for name, text in OFFICIAL.items():
        assert load_template(name) == text, name


@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
def test_render_is_byte_exact_with_the_official_jinja(wearing, conversation):
    tok, spec = wearing
    messages = CONVERSATIONS[conversation]
    ours = tok.apply_chat_template(messages, tokenize=False)
    assert ours.encode("utf-8") == official_render(spec.name, messages).encode("utf-8")


@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
def test_label_mask_token_by_token(wearing, conversation):
    tok, spec = wearing
    messages = CONVERSATIONS[conversation]
    example = build_example(tok, spec, messages, max_length=2048)
    assert render_row(tok, example, plain=True) == expected_view(spec.name, messages)
    # Masked tokens are exactly -100, trained tokens carry their own id.
    for token_id, label in zip(example["input_ids"], example["labels"], strict=True):
        assert label in (-100, token_id)
