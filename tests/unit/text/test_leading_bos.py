"""Rows and prompts start exactly as the model's own usage starts them, on the real tokenizers.

The model's own usage is ``tokenizer(tokenizer.apply_chat_template(messages, tokenize=False))``
with the tokenizer's defaults: SOLAR's adds ``<s>`` (its template renders none), Llama 3.1's
template renders one ``<|begin_of_text|>`` (and the default would add a second), EXAONE's
has none at all.
"""

from __future__ import annotations

import pytest
from test_labels import _supervised_runs

from medft.text.audit import AuditError, AuditReport, check_rows
from medft.text.labels import (
    IGNORE_INDEX,
    build_example,
    encode_prompt,
    encode_prompts,
    leading_special_ids,
    render_with_targets,
)
from medft.text.templates import get_spec

from conftest import compose_config

CONVERSATION = [
    {"role": "system", "content": "당신은 친절한 의료 상담 도우미입니다."},
    {"role": "user", "content": "고혈압이 있는데 라면을 먹어도 되나요?"},
    {"role": "assistant", "content": "국물은 남기고, 하루 나트륨 섭취를 2,000 mg 이하로 줄이세요."},
]
TWO_TURNS = [
    *CONVERSATION,
    {"role": "user", "content": "운동은요?"},
    {"role": "assistant", "content": "주 5회, 30분씩 걷기를 권합니다."},
]
MODELS = {
    "solar": ("solar_dir", "<s>", 1),
    "llama": ("llama31_dir", "<|begin_of_text|>", 1),
    "exaone": ("exaone_dir", "[BOS]", 0),
}


def _load(request, name):
    """(model name, tokenizer as medft loads it, template spec) for one stand-in."""
    from medft.modeling.models import load_tokenizer

    cfg = compose_config([f"model={name}", f"model.path={request.getfixturevalue(MODELS[name][0])}"])
    return name, load_tokenizer(cfg.model), get_spec(cfg.model.chat_template)


@pytest.fixture(scope="module", params=sorted(MODELS))
def standin(request):
    return _load(request, request.param)


@pytest.fixture(scope="module")
def solar(request):
    return _load(request, "solar")


def _leading(ids, token_id):
    count = 0
    while count < len(ids) and ids[count] == token_id:
        count += 1
    return count


def test_leading_special_ids_come_from_the_tokenizer_defaults(standin):
    name, tok, _ = standin
    expected = {"solar": ["<s>"], "llama": ["<|begin_of_text|>"], "exaone": []}[name]
    assert tok.convert_ids_to_tokens(leading_special_ids(tok)) == expected


def test_rows_start_with_the_bos_of_the_models_own_usage(standin):
    name, tok, spec = standin
    _, bos, count = MODELS[name]
    ids = build_example(tok, spec, CONVERSATION, max_length=4096)["input_ids"]
    bos_id = tok.convert_tokens_to_ids(bos)
    assert _leading(ids, bos_id) == count and ids.count(bos_id) == count


def test_solar_rows_are_exactly_what_the_tokenizer_defaults_give(solar):
    _, tok, spec = solar
    rendered = render_with_targets(tok, spec, TWO_TURNS)
    assert build_example(tok, spec, TWO_TURNS, max_length=4096)["input_ids"] == tok(rendered.text)["input_ids"]


@pytest.mark.parametrize("messages", [CONVERSATION, TWO_TURNS], ids=["one-turn", "two-turns"])
def test_labels_supervise_exactly_the_answers_and_end_of_turn(standin, messages):
    _, tok, spec = standin
    example = build_example(tok, spec, messages, max_length=4096)
    assert example["labels"][0] == IGNORE_INDEX
    runs = _supervised_runs(tok, example)
    assert runs == [m["content"] + spec.end_of_turn for m in messages if m["role"] == "assistant"]


def test_prompts_encode_as_the_training_rows_begin(standin):
    """Generation sees the same ids that training put before the answer."""
    _, tok, spec = standin
    row = build_example(tok, spec, CONVERSATION, max_length=4096)["input_ids"]
    prompt = tok.apply_chat_template(CONVERSATION[:-1], tokenize=False, add_generation_prompt=True)
    ids = encode_prompt(tok, prompt)
    assert row[: len(ids)] == ids and len(ids) < len(row)


def test_batched_prompts_keep_the_bos_after_left_padding(standin):
    name, tok, _ = standin
    _, bos, count = MODELS[name]
    texts = [
        tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
        for m in (CONVERSATION[:2], CONVERSATION[1:2])
    ]
    tok.padding_side = "left"
    try:
        batch = encode_prompts(tok, texts)
    finally:
        tok.padding_side = "right"
    assert batch["attention_mask"][1, 0] == 0  # the shorter prompt is padded on the left
    for row, mask, text in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), texts, strict=True):
        real = [i for i, m in zip(row, mask, strict=True) if m]
        assert real == encode_prompt(tok, text) and _leading(real, tok.convert_tokens_to_ids(bos)) == count


def test_generate_reply_prompts_with_the_models_bos(standin):
    """The chat/serve path hands generate() the ids training used."""
    import torch

    from medft.modeling.generate import generate_reply

    name, tok, spec = standin
    seen = {}

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, input_ids, **kwargs):
            seen["ids"] = input_ids[0].tolist()
            return torch.cat([input_ids, torch.tensor([[tok.eos_token_id]])], dim=1)

    generate_reply(Model(), tok, CONVERSATION[:2], {"max_new_tokens": 4})
    prompt = tok.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert seen["ids"] == encode_prompt(tok, prompt)
    assert _leading(seen["ids"], tok.convert_tokens_to_ids(MODELS[name][1])) == MODELS[name][2]


def _rows(tok, spec):
    examples = [build_example(tok, spec, m, max_length=4096) for m in (CONVERSATION, TWO_TURNS)]
    return [{"id": f"r{i}", "input_ids": e["input_ids"], "labels": e["labels"]} for i, e in enumerate(examples)]


def test_audit_passes_rows_as_built(standin):
    name, tok, spec = standin
    report = AuditReport()
    check_rows(report, _rows(tok, spec), tok, spec)
    assert report.checks["leading_bos"] == f"every row starts with {MODELS[name][2]} BOS ({tok.bos_token})"


@pytest.mark.parametrize("change, found", [("drop", 0), ("double", 2)])
def test_audit_fails_a_row_with_the_wrong_bos_count(solar, change, found):
    """SOLAR rows without <s> (the tokenized-without-special-tokens bug) or with two fail in one line."""
    _, tok, spec = solar
    rows = _rows(tok, spec)
    ids, labels = rows[1]["input_ids"], rows[1]["labels"]
    rows[1] = {
        "id": "r1",
        "input_ids": ids[1:] if change == "drop" else [1, *ids],
        "labels": labels[1:] if change == "drop" else [IGNORE_INDEX, *labels],
    }
    with pytest.raises(AuditError) as err:
        check_rows(AuditReport(), rows, tok, spec)
    expected = f"preflight leading_bos: row r1 starts with {found} BOS (<s>), the model's own usage gives 1"
    assert str(err.value) == expected


def test_the_tokenizers_default_bos_is_in_the_tokenized_cache_key(solar):
    """Rows cached for a tokenizer that adds <s> are never served to one that does not (and back)."""
    import copy

    from tokenizers import processors

    from medft.text.tokenized_cache import cache_key

    _, tok, spec = solar
    bare = copy.deepcopy(tok)
    bare.backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B:1")
    assert leading_special_ids(bare) == [] and leading_special_ids(tok) == [1]
    assert cache_key("f", bare, spec, 512) != cache_key("f", tok, spec, 512)
