"""Fast-path switches: chosen per device and data layout, refused in one line where they cannot run."""

from __future__ import annotations

import pytest

from medft import models, trainer
from medft.errors import ConfigError


def test_auto_switches_on_cpu(compose, tmp_path):
    cfg = compose()
    assert models.resolve_attention(cfg.model, "cpu") == "sdpa"
    assert models.resolve_attention(compose(["model=exaone"]).model, "cpu") == "sdpa"
    assert compose(["model=exaone"]).model.attn_implementation.value == "auto"
    assert not trainer.use_liger(cfg, "cpu") and not trainer.use_tf32(cfg, "cpu")
    packed = trainer.sft_config(cfg, tmp_path, "cpu", [], False, packing=True)
    padded = trainer.sft_config(cfg, tmp_path, "cpu", [], False, packing=False)
    # grouping by length only helps padded batches
    assert packed.train_sampling_strategy == "random" and padded.train_sampling_strategy == "group_by_length"
    assert packed.use_liger_kernel is False and not packed.bf16 and not packed.gradient_checkpointing
    off = trainer.sft_config(compose(["train.group_by_length=false"]), tmp_path, "cpu", [], False, packing=False)
    assert off.train_sampling_strategy == "random"


def test_explicit_attention_wins(compose):
    assert models.resolve_attention(compose(["model.attn_implementation=eager"]).model, "cuda") == "eager"


@pytest.mark.parametrize("override", ["train.liger=true"])
def test_liger_forced_where_it_cannot_run_is_one_line(compose, override):
    with pytest.raises(ConfigError, match=r"train\.liger=true needs"):
        trainer.use_liger(compose([override]), "cpu")
