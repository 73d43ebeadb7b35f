"""Several GPUs, correctly: each worker's 4-bit model on its own GPU, never DataParallel."""

from __future__ import annotations

import pytest

from medft.config.resolve import resolve
from medft.modeling import models
from medft.runtime.devices import DeviceFacts
from medft.training import trainer

from conftest import compose_config


def test_qlora_workers_load_on_their_local_rank(monkeypatch, tiny_source):
    """Under torchrun every rank must put its 4-bit copy on its own GPU, not all on GPU 0."""
    import transformers

    seen = {}

    class Stop(Exception):  # not one the loader turns into a one-line ConfigError
        pass

    def fake_from_pretrained(location, **kwargs):
        seen.update(kwargs)
        raise Stop("stop after the arguments")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    monkeypatch.setenv("LOCAL_RANK", "3")
    cfg = compose_config(["method=qlora"])
    with pytest.raises(Stop, match="stop after the arguments"):
        models.load_model(cfg.model, cfg.method, "cuda", tiny_source)
    assert seen["device_map"] == {"": 3}


def test_one_process_never_wraps_the_model_in_data_parallel(tmp_path):
    """A process that sees several GPUs (n_gpu > 1) would get nn.DataParallel and a multiplied batch."""
    cfg = compose_config(["logger=none"])
    args = trainer.sft_config(cfg, tmp_path, resolve(cfg, DeviceFacts()), [], False)
    args.device  # noqa: B018
    args._n_gpu = 4  # what TrainingArguments sets with four visible GPUs and no torchrun
    assert args.n_gpu == 4 and args.train_batch_size == 4 * args.per_device_train_batch_size
    trainer.use_one_device_per_process(args)
    assert args.n_gpu == 1 and args.train_batch_size == args.per_device_train_batch_size
