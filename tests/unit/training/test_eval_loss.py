"""Validation loss is the per-token NLL over the whole split: the same at any eval batch size, on
both loss paths, and the same number eval=heldout reports on those rows."""

from __future__ import annotations

import pytest

from medft.training import eval_loss
from medft.training import trainer as trainer_lib
from medft.training.pipeline import JobInfo, run_training

from conftest import compose_config

BATCH_SIZES = (1, 3, 8)


def _trained(tmp_path, fused: str):
    """A one-step demo run; its trainer and config, kept for evaluation afterwards."""
    captured = {}
    real = trainer_lib.build_trainer

    def capture(*args, **kwargs):
        captured["trainer"] = real(*args, **kwargs)
        return captured["trainer"]

    cfg = compose_config(["logger=none", "train.max_steps=1", "train.save_strategy=no", f"train.fused_loss={fused}"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_lib, "build_trainer", capture)
        metrics = run_training(cfg, JobInfo(run_dir=tmp_path / f"fused-{fused}"))
    return captured["trainer"], cfg, metrics


def _heldout_loss(sft, cfg) -> dict:
    from medft.data.cache import prepare_data
    from medft.evals import heldout
    from medft.runs.loading import LoadedModel

    rows = prepare_data(cfg.data, progress=False)[0]["validation"].to_list()
    sft.model.eval()
    return heldout.teacher_forced_loss(LoadedModel(cfg, sft.processing_class, sft.model, None, True), rows, 4)


@pytest.mark.parametrize("fused", ["false", "true"])
def test_validation_loss_ignores_the_eval_batch_size_and_equals_heldout(tmp_path, fused):
    sft, cfg, metrics = _trained(tmp_path, fused)
    losses = {}
    for size in BATCH_SIZES:
        sft.args.per_device_eval_batch_size = size
        losses[size] = sft.evaluate()["eval_loss"]
    assert max(losses.values()) - min(losses.values()) < 1e-6, losses
    assert metrics["eval_loss"] == pytest.approx(losses[cfg.train.eval_batch_size], abs=1e-6)
    reference = _heldout_loss(sft, cfg)
    assert reference["loss_rows"] == len(sft.eval_dataset)
    assert abs(reference["loss"] - losses[8]) < 1e-5, (reference, losses)


def test_rows_differ_in_supervised_tokens_so_a_mean_of_batch_means_would_move(tiny_tokenizer):
    """Guard for the test above: on the demo's validation rows batch means weight tokens unequally."""
    from medft.data.cache import prepare_data
    from medft.text.labels import tokenize_splits
    from medft.text.templates import get_spec

    cfg = compose_config()
    datasets, _ = prepare_data(cfg.data, progress=False)
    tokenized, _ = tokenize_splits(
        datasets, tiny_tokenizer, get_spec(cfg.model.chat_template), cfg.train.max_length, progress=False
    )
    counts = [sum(x != -100 for x in labels[1:]) for labels in tokenized["validation"]["labels"]]
    assert len(counts) % 3 and len(counts) % 8, "a last, shorter batch at eval batch sizes 3 and 8"
    assert len(set(counts)) > 1, counts


def _tensor(rows, dtype=None):
    import torch

    return torch.tensor(rows, dtype=dtype)


def test_supervised_only_logits_give_the_full_cross_entropy_per_position():
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    labels = _tensor([[-100, 3, 1, -100], [-100, -100, 2, 0]])
    full = torch.randn(2, 4, 5)
    mask = labels[:, 1:] != -100
    supervised = full[:, :-1][mask]  # what medft.training.supervised_head hands the LM head, row by row
    nll, kept = eval_loss.token_nll({"logits": supervised}, labels)
    expected = F.cross_entropy(full[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none")
    assert kept.tolist() == mask.tolist()
    assert torch.allclose(nll.float(), expected, atol=1e-6)
    sums, tokens = eval_loss.per_sequence(nll, kept, {"input_ids": labels, "attention_mask": torch.ones_like(labels)})
    assert tokens.tolist() == [2, 2]
    assert torch.allclose(sums.float(), expected.sum(dim=1), atol=1e-6)


def test_fused_head_output_is_read_as_negative_log_probabilities():
    from types import SimpleNamespace

    output = SimpleNamespace(log_probs=_tensor([[-1.0, 0.0, -2.5]]), label_mask=_tensor([[True, False, True]]))
    nll, mask = eval_loss.token_nll(output, _tensor([[-100, 4, -100, 6]]))
    assert nll.tolist() == [[1.0, 0.0, 2.5]] and mask.tolist() == [[True, False, True]]


def test_a_padding_free_batch_is_split_into_its_sequences():
    """TRL's flattening collator: one row, three sequences of 3, 2 and 3 tokens."""
    import torch

    positions = _tensor([[0, 1, 2, 0, 1, 0, 1, 2]])
    labels = _tensor([[-100, 5, 6, -100, 7, -100, 8, 9]])
    nll = torch.arange(1, 8, dtype=torch.float64).unsqueeze(0)  # one value per predicted position 1..7
    mask = labels[:, 1:] != -100
    inputs = {"input_ids": torch.zeros_like(labels), "position_ids": positions, "labels": labels}
    sums, tokens = eval_loss.per_sequence(nll, mask, inputs)
    assert tokens.tolist() == [2, 1, 2]
    assert sums.tolist() == [1 + 2, 4, 6 + 7]


def test_totals_divide_tokens_not_sequences():
    totals = eval_loss.TokenTotals()
    assert totals.mean() is None
    totals.add(_tensor([10.0, 2.0]), _tensor([4, 1]))
    totals.add(_tensor([3.0]), _tensor([5]))
    assert totals.mean() == pytest.approx(15 / 10) and totals.sequences == 3
