"""Labels come from the template: exactly the assistant turns and their end-of-turn token."""

from __future__ import annotations

import pytest

from medft.text.labels import IGNORE_INDEX, RowError, build_example
from medft.text.templates import TEMPLATES, get_spec

from conftest import wear_template

MULTI_TURN = [
    {"role": "system", "content": "당신은 친절한 의료 상담 도우미입니다."},
    {"role": "user", "content": "머리가 아파요."},
    {"role": "assistant", "content": "언제부터 아프셨나요?"},
    {"role": "user", "content": "어제 저녁부터요."},
    {"role": "assistant", "content": "물을 충분히 드시고, 계속되면 진료를 받으세요."},
]


@pytest.fixture(params=sorted(TEMPLATES))
def templated(request, tiny_tokenizer):
    """The tiny tokenizer carries every template's special tokens, so it can wear each template."""
    return wear_template(tiny_tokenizer, request.param)


def _supervised_runs(tok, example):
    """Decoded text of each maximal run of supervised tokens."""
    runs, current = [], []
    for token_id, label in zip(example["input_ids"], example["labels"], strict=True):
        if label != IGNORE_INDEX:
            assert label == token_id
            current.append(token_id)
        elif current:
            runs.append(tok.decode(current))
            current = []
    if current:
        runs.append(tok.decode(current))
    return runs


@pytest.mark.parametrize(
    "messages", [MULTI_TURN, MULTI_TURN[1:], MULTI_TURN[:3]], ids=["system", "no-system", "one-turn"]
)
def test_exactly_assistant_content_and_end_of_turn_are_supervised(templated, messages):
    tok, spec = templated
    example = build_example(tok, spec, messages, max_length=1024)
    expected = [m["content"] + spec.end_of_turn for m in messages if m["role"] == "assistant"]
    assert _supervised_runs(tok, example) == expected


def test_rendered_text_matches_the_tokenizers_own_template(templated):
    tok, spec = templated
    example = build_example(tok, spec, MULTI_TURN, max_length=1024)
    official = tok.apply_chat_template(MULTI_TURN, tokenize=False)
    ours = tok.decode(example["input_ids"])
    # SOLAR's template closes no turn: medft appends </s> to each assistant target, nothing else.
    assert ours.replace(spec.assistant_suffix, "") == official if spec.assistant_suffix else ours == official


def test_no_double_bos(templated):
    tok, spec = templated
    ids = build_example(tok, spec, MULTI_TURN, max_length=1024)["input_ids"]
    bos = tok.convert_tokens_to_ids(spec.bos_token)
    assert ids[:2] != [bos, bos]
    assert ids.count(bos) == (1 if spec.renders_bos else 0)


def test_exaone_template_byte_exact(tiny_tokenizer):
    text = tiny_tokenizer.apply_chat_template(MULTI_TURN[1:3], tokenize=False)
    assert text == "[|system|][|endofturn|]\n[|user|]머리가 아파요.\n[|assistant|]언제부터 아프셨나요?[|endofturn|]\n"


def test_long_user_context_is_shortened_never_the_answer(tiny_tokenizer):
    spec = get_spec("exaone3_5")
    messages = [{"role": "user", "content": "근거 문단입니다. " * 200}, {"role": "assistant", "content": "답변입니다."}]
    example = build_example(tiny_tokenizer, spec, messages, max_length=128)
    assert len(example["input_ids"]) <= 128 and example["truncated"]
    assert _supervised_runs(tiny_tokenizer, example) == ["답변입니다.[|endofturn|]"]


def test_answer_that_cannot_fit_is_a_counted_row_error(tiny_tokenizer):
    spec = get_spec("exaone3_5")
    messages = [{"role": "user", "content": "질문"}, {"role": "assistant", "content": "아주 긴 답변. " * 100}]
    with pytest.raises(RowError) as err:
        build_example(tiny_tokenizer, spec, messages, max_length=64)
    assert err.value.reason == "too_long"
