"""The plain-loss path: only supervised positions reach the LM head, right padding goes unmasked,
and the loss and gradients stay those of the model's own cross-entropy over the full batch."""

from __future__ import annotations

import pytest

from medft.config.resolve import resolve
from medft.modeling import models
from medft.runtime.devices import DeviceFacts
from medft.runtime.errors import ConfigError
from medft.training import causal_mask, supervised_head, trainer


def _labels(rows):
    import torch

    return torch.tensor(rows)


def test_next_token_mask_marks_positions_whose_next_label_is_kept():
    labels = _labels([[-100, -100, 7, 8, -100], [-100, 5, -100, 6, 9]])
    mask = supervised_head.next_token_mask(labels)
    assert mask.tolist() == [[False, True, True, False, False], [True, False, True, True, False]]


def test_a_head_that_gets_other_shapes_fails_with_the_switch_to_use():
    import torch

    head = torch.nn.Linear(4, 3, bias=False)
    with supervised_head.project_supervised_only(head, _labels([[-100, 1, 2]])):
        with pytest.raises(ConfigError, match=r"^train\.fused_loss=false: .*: set train\.fused_loss=true$"):
            head(torch.zeros(2, 4))  # 2-D: not the [batch, seq, hidden] the mask was made for
    assert head(torch.zeros(2, 4)).shape == (2, 3), "the hook is removed on exit"


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        ([[1, 1, 1], [1, 1, 0], [1, 0, 0]], True),
        ([[1, 1, 1], [1, 1, 1]], True),
        ([[0, 1, 1], [1, 1, 1]], False),  # left padding: a real token would see no pad, but positions shift
        ([[1, 0, 1]], False),  # a hole
    ],
)
def test_right_padding_is_recognised(mask, expected):
    import torch

    assert causal_mask.is_right_padded(torch.tensor(mask)) is expected


def test_padding_mask_left_out_only_where_nothing_reads_the_pads():
    import torch

    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    labels = torch.tensor([[-100, 4, 5], [-100, 4, -100]])
    inputs = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": mask, "labels": labels}
    assert "attention_mask" not in causal_mask.without_redundant_padding_mask(inputs, "sdpa")
    assert "attention_mask" not in causal_mask.without_redundant_padding_mask(inputs, "eager")
    kept = [
        causal_mask.without_redundant_padding_mask(inputs, "flash_attention_2"),  # unpads with the mask
        causal_mask.without_redundant_padding_mask({**inputs, "position_ids": mask}, "sdpa"),  # packed
        causal_mask.without_redundant_padding_mask({**inputs, "labels": torch.tensor([[1, 2, 3], [1, 2, 3]])}, "sdpa"),
        causal_mask.without_redundant_padding_mask(
            {**inputs, "attention_mask": torch.tensor([[0, 1, 1], [1, 1, 1]])}, "sdpa"
        ),
    ]
    assert all("attention_mask" in k for k in kept)


def test_only_transformers_own_attention_code_goes_without_the_mask(compose, tiny_source):
    cfg = compose()
    model = models.load_model(cfg.model, cfg.method, "cpu", tiny_source)
    assert causal_mask.causal_only_attention(model) == "sdpa"

    class RemoteCodeModel:  # what trust_remote_code loads: a class from the checkpoint's own module
        config = model.config

    RemoteCodeModel.__module__ = "transformers_modules.LGAI_EXAONE.modeling_exaone"
    assert causal_mask.causal_only_attention(RemoteCodeModel()) is None


@pytest.fixture
def padded_batch(compose, tiny_tokenizer):
    """Four shipped conversations, tokenized with medft's labels and padded by TRL's collator."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from medft.data.cache import prepare_data
    from medft.text import labels
    from medft.text.templates import get_spec

    datasets, _ = prepare_data(compose().data, progress=False)
    tokenized, _ = labels.tokenize_splits(datasets, tiny_tokenizer, get_spec("exaone3_5"), 512, progress=False)
    rows = tokenized["train"].remove_columns(["id"]).select(range(4))
    batch = DataCollatorForLanguageModeling(pad_token_id=tiny_tokenizer.pad_token_id)(list(rows))
    assert (batch["attention_mask"] == 0).any(), "the batch must be padded for these tests to mean anything"
    assert (batch["labels"][:, :8] == -100).all(), "the prompt must be masked for these tests to mean anything"
    return rows, batch


def _lora_model(cfg, tiny_source):
    import torch

    from medft.modeling import methods

    model = models.load_model(cfg.model, cfg.method, "cpu", tiny_source)
    torch.manual_seed(0)  # the same LoRA initialisation every time
    model = methods.apply_method(model, cfg.model, cfg.method, gradient_checkpointing=False)
    model.eval()  # no dropout: every variant sees the same activations
    return model


def test_head_sees_only_supervised_positions_and_loss_equals_the_models_own(
    compose, tiny_tokenizer, tiny_source, tmp_path, padded_batch
):
    import torch

    rows, batch = padded_batch
    cfg = compose()
    supervised = int((batch["labels"][:, 1:] != -100).sum())
    num_items = torch.tensor(2 * supervised)  # two accumulation steps' worth: the loss divides by these

    reference = _lora_model(cfg, tiny_source)
    expected = reference(**batch, num_items_in_batch=num_items, use_cache=False).loss
    expected.backward()
    expected_grads = {n: p.grad.clone() for n, p in reference.named_parameters() if p.requires_grad}

    model = _lora_model(cfg, tiny_source)
    sft = trainer.build_trainer(
        model,
        tiny_tokenizer,
        trainer.sft_config(cfg, tmp_path, resolve(cfg, DeviceFacts()), [], False),
        rows,
        None,
        fused_loss=False,
    )
    seen = {}
    head = model.get_output_embeddings()
    hook = head.register_forward_hook(lambda _m, args, out: seen.update(hidden=args[0].shape, logits=out.shape))
    captured = {}
    real_forward = model.forward

    def spy(**kwargs):
        captured.update(kwargs)
        return real_forward(**kwargs)

    model.forward = spy
    loss = sft.compute_loss(model, dict(batch), num_items_in_batch=num_items)
    hook.remove()
    loss.backward()

    assert seen["hidden"] == (supervised, model.config.hidden_size)
    assert seen["logits"][0] == supervised, "logits only for the supervised positions"
    assert "attention_mask" not in captured, "a right-padded batch needs no padding mask under causal attention"
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    worst = max((p.grad - expected_grads[n]).abs().max().item() for n, p in model.named_parameters() if p.requires_grad)
    assert worst < 1e-5


def test_a_batch_without_supervised_tokens_gives_zero_loss_and_gradients(
    compose, tiny_tokenizer, tiny_source, tmp_path, padded_batch
):
    import torch

    rows, batch = padded_batch
    cfg = compose()
    model = _lora_model(cfg, tiny_source)
    sft = trainer.build_trainer(
        model,
        tiny_tokenizer,
        trainer.sft_config(cfg, tmp_path, resolve(cfg, DeviceFacts()), [], False),
        rows,
        None,
        fused_loss=False,
    )
    batch = {**batch, "labels": torch.full_like(batch["labels"], -100)}
    loss = sft.compute_loss(model, batch, num_items_in_batch=torch.tensor(10))
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters() if p.requires_grad)


def test_evaluation_loss_equals_the_models_mean_loss(compose, tiny_tokenizer, tiny_source, tmp_path, padded_batch):
    rows, batch = padded_batch
    cfg = compose(["train.eval_batch_size=4"])
    model = _lora_model(cfg, tiny_source)
    expected = model(**batch, use_cache=False).loss.item()
    args = trainer.sft_config(cfg, tmp_path, resolve(cfg, DeviceFacts()), [], True)
    sft = trainer.build_trainer(model, tiny_tokenizer, args, rows, rows, fused_loss=False)
    assert sft.evaluate()["eval_loss"] == pytest.approx(expected, rel=1e-5)
