"""Fast-path switches: chosen per device and data layout, refused in one line where they cannot run."""

from __future__ import annotations

import pytest

from medft.config.resolve import resolve
from medft.modeling import models
from medft.runtime.devices import DeviceFacts
from medft.runtime.errors import ConfigError
from medft.training import trainer

CPU = DeviceFacts(kind="cpu")
CUDA = DeviceFacts(kind="cuda", cuda_bf16=True, capability=(8, 0))


def test_auto_switches_on_cpu(compose, tmp_path):
    cfg = compose()
    assert models.resolve_attention(cfg.model, "cpu") == "sdpa"
    assert models.resolve_attention(compose(["model=exaone"]).model, "cpu") == "sdpa"
    assert compose(["model=exaone"]).model.attn_implementation.value == "auto"
    cpu = resolve(cfg, CPU)
    assert not cpu.liger and not cpu.tf32
    packed = trainer.sft_config(cfg, tmp_path, cpu.with_packing(True), [], False)
    padded = trainer.sft_config(cfg, tmp_path, cpu.with_packing(False), [], False)
    # grouping by length only helps padded batches
    assert packed.train_sampling_strategy == "random" and padded.train_sampling_strategy == "group_by_length"
    assert packed.use_liger_kernel is False and not packed.bf16 and not packed.gradient_checkpointing
    ungrouped = compose(["train.group_by_length=false"])
    off = trainer.sft_config(ungrouped, tmp_path, resolve(ungrouped, CPU).with_packing(False), [], False)
    assert off.train_sampling_strategy == "random"


def test_explicit_attention_wins(compose):
    assert models.resolve_attention(compose(["model.attn_implementation=eager"]).model, "cuda") == "eager"


@pytest.mark.parametrize("override", ["train.liger=true"])
def test_liger_forced_where_it_cannot_run_is_one_line(compose, override):
    with pytest.raises(ConfigError, match=r"train\.liger=true needs"):
        resolve(compose([override]), CPU)


def test_memory_plan_checkpoints_only_when_needed_and_refuses_what_cannot_fit(compose, tiny_source):
    """The CUDA planning step, run with the GPU's free memory given (the estimate needs no GPU)."""
    from medft.training import memory as memplan
    from medft.training.pipeline import plan_memory

    cfg = compose(["train.per_device_batch_size=8", "train.max_length=1024"])
    shape = memplan.shape_from_source(cfg.model, tiny_source)
    without = memplan.estimate_for_config(cfg, shape, device="cuda", gradient_checkpointing=False).total
    with_gc = memplan.estimate_for_config(cfg, shape, device="cuda", gradient_checkpointing=True).total
    assert with_gc < without

    cuda = resolve(cfg, CUDA)
    ample = plan_memory(cfg, tiny_source, cuda, free_bytes=4 * without)
    assert ample["checkpointing_needed"] is False
    tight = plan_memory(cfg, tiny_source, cuda, free_bytes=int((with_gc + without) / 2 / 0.9))
    assert tight["checkpointing_needed"] is True
    assert cfg.train.gradient_checkpointing is None  # the config itself is left as composed
    assert cuda.with_memory_plan(False).gradient_checkpointing is False  # the plan flows into the settings
    assert cuda.with_memory_plan(True).gradient_checkpointing is True
    with pytest.raises(
        ConfigError, match=r"model=tiny method=lora needs ~.* GiB at train.per_device_batch_size=8 .* GiB free; "
    ):
        plan_memory(cfg, tiny_source, cuda, free_bytes=int(with_gc * 0.5))
    assert plan_memory(cfg, tiny_source, resolve(cfg, CPU)) == {}
    unchecked = compose(["train.memory_check=false"])
    assert plan_memory(unchecked, tiny_source, resolve(unchecked, CUDA), free_bytes=1) == {}


def test_parallel_tokenization_equals_one_pass(compose, tiny_tokenizer, monkeypatch):
    from medft.data.cache import prepare_data
    from medft.text import labels
    from medft.text.templates import get_spec

    datasets, _ = prepare_data(compose().data, progress=False)
    spec = get_spec("exaone3_5")
    serial, serial_report = labels.tokenize_splits(datasets, tiny_tokenizer, spec, 256, progress=False, num_proc=1)
    monkeypatch.setattr(labels, "CHUNK_ROWS", 7)  # many chunks, so order and merging are exercised
    forked, forked_report = labels.tokenize_splits(datasets, tiny_tokenizer, spec, 256, progress=False, num_proc=2)
    assert serial_report == forked_report
    assert serial_report["train"]["skipped"], "max_length 256 makes some rows unfit: their counting is merged too"
    for split in serial:
        assert serial[split].to_dict() == forked[split].to_dict()


def test_fused_loss_is_auto_per_device(compose):
    cfg = compose()
    assert not resolve(cfg, CPU).fused_loss and resolve(cfg, CUDA).fused_loss
    assert resolve(compose(["train.fused_loss=true"]), CPU).fused_loss
    assert not resolve(compose(["train.fused_loss=false"]), CUDA).fused_loss


def test_model_loss_equals_trl_fused_loss_and_gradients(compose, tiny_tokenizer, tiny_source, tmp_path):
    """The CPU default (medft's plain loss) trains exactly what TRL's fused head trains:
    same loss and same gradients on a padded batch, token-weighted by num_items_in_batch."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from medft.data.cache import prepare_data
    from medft.modeling import methods
    from medft.text import labels
    from medft.text.templates import get_spec

    cfg = compose()
    datasets, _ = prepare_data(cfg.data, progress=False)
    tokenized, _ = labels.tokenize_splits(datasets, tiny_tokenizer, get_spec("exaone3_5"), 512, progress=False)
    rows = tokenized["train"].remove_columns(["id"]).select(range(4))
    batch = DataCollatorForLanguageModeling(pad_token_id=tiny_tokenizer.pad_token_id)(list(rows))
    assert (batch["attention_mask"] == 0).any(), "the batch must be padded for the test to mean anything"
    supervised = int((batch["labels"][:, 1:] != -100).sum())
    results = {}
    for fused in (True, False):
        model = models.load_model(cfg.model, cfg.method, "cpu", tiny_source)
        torch.manual_seed(0)  # same LoRA initialisation for both
        model = methods.apply_method(model, cfg.model, cfg.method, gradient_checkpointing=False)
        model.eval()  # no dropout: both heads see the same activations
        args = trainer.sft_config(cfg, tmp_path / str(fused), resolve(cfg, CPU), [], False)
        sft = trainer.build_trainer(model, tiny_tokenizer, args, rows, None, fused_loss=fused)
        assert sft.fused_loss is fused
        # Two accumulation steps' worth of tokens: the loss must divide by them, not by this batch.
        loss = sft.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(2 * supervised))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results[fused] = (loss.item(), grads)
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    assert results[True][0] < 20 / 2  # half the token-mean cross-entropy: not the per-batch mean
    worst = max((results[True][1][n] - results[False][1][n]).abs().max().item() for n in results[True][1])
    assert worst < 1e-5


def test_length_grouped_order_depends_on_seed_and_epoch_only(compose, tiny_tokenizer, tiny_source, tmp_path):
    """A resumed run restores the RNG from its checkpoint; the row order must not depend on it."""
    import torch
    from datasets import Dataset

    cfg = compose()
    rows = Dataset.from_dict(
        {"input_ids": [[5] * (3 + i % 17) for i in range(64)], "labels": [[5] * (3 + i % 17) for i in range(64)]}
    )
    model = models.load_model(cfg.model, cfg.method, "cpu", tiny_source)
    sft = trainer.build_trainer(
        model, tiny_tokenizer, trainer.sft_config(cfg, tmp_path, resolve(cfg, CPU), [], False), rows, None
    )
    orders = []
    for rng_seed in (1, 2):
        torch.manual_seed(rng_seed)
        sampler = sft._get_train_sampler()
        sampler.set_epoch(1)
        orders.append(list(sampler))
    assert orders[0] == orders[1]
    sampler.set_epoch(2)
    assert list(sampler) != orders[0]
    lengths = [len(rows[i]["input_ids"]) for i in orders[0][:4]]
    assert max(lengths) - min(lengths) <= 4, "a batch holds rows of similar length"
