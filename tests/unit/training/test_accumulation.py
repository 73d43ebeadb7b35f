"""Gradient accumulation weights tokens, not micro-batches: 8 x 1 and 2 x 4 take the same step."""

from __future__ import annotations

import pytest

from medft.modeling import methods
from medft.training.pipeline import JobInfo, run_training

from conftest import compose_config


def _one_sgd_step(tmp_path, batch: int, accumulation: int, packing: str):
    captured = {}
    real_apply = methods.apply_method

    def capture(model, *args, **kwargs):
        captured["model"] = real_apply(model, *args, **kwargs)
        return captured["model"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(methods, "apply_method", capture)
        cfg = compose_config(
            [
                "method=full",
                "logger=none",
                "train.optim=sgd",
                "train.learning_rate=0.5",
                "train.max_steps=1",
                "train.max_grad_norm=0",
                "train.lr_scheduler=constant",
                "train.save_strategy=no",
                f"train.per_device_batch_size={batch}",
                f"train.gradient_accumulation_steps={accumulation}",
                f"train.packing={packing}",
                "~data.sources.pubmedqa_ko",
            ]
        )
        metrics = run_training(cfg, JobInfo(run_dir=tmp_path / f"{batch}x{accumulation}-{packing}"))
    params = {n: p.detach().clone() for n, p in captured["model"].named_parameters()}
    return metrics, params


@pytest.mark.parametrize("packing", ["false", "true"])
def test_batch_8_equals_batch_2_times_accumulation_4(tmp_path, packing):
    whole, whole_params = _one_sgd_step(tmp_path, 8, 1, packing)
    split, split_params = _one_sgd_step(tmp_path, 2, 4, packing)
    assert whole["train_loss_first"] == pytest.approx(split["train_loss_first"], rel=1e-5)
    worst = max((whole_params[n] - split_params[n]).abs().max().item() for n in whole_params)
    assert worst < 1e-5, f"parameters differ by {worst} after one step"


def test_rows_differ_in_length_so_per_batch_averaging_would_be_wrong(tiny_tokenizer):
    """Guard for the test above: on these rows the mean of micro-batch means is not the token mean."""
    from medft.data import load_datasets
    from medft.text.labels import tokenize_splits
    from medft.text.templates import get_spec

    cfg = compose_config(["~data.sources.pubmedqa_ko"])
    datasets, _ = load_datasets(cfg.data, progress=False)
    tokenized, _ = tokenize_splits(datasets, tiny_tokenizer, get_spec("exaone3_5"), 1024, progress=False)
    counts = [sum(1 for x in labels if x != -100) for labels in tokenized["train"]["labels"][:8]]
    per_micro_batch = [sum(counts[i : i + 2]) for i in range(0, 8, 2)]
    assert len(set(per_micro_batch)) > 1, counts
