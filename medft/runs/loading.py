"""Load what a training run produced, for evaluate, export, chat and serve.

A run directory holds the resolved config and either `adapter/` (LoRA, QLoRA) or `model/`
(freeze, full), each saved with the tokenizer and the training chat template. Loading goes
through medft.modeling.models for the base, so a run on `model=tiny` reloads the same tiny base and
a QLoRA run reloads its 4-bit base.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medft.runs.rundir import RunDir
from medft.runtime.errors import ConfigError


@dataclass
class LoadedModel:
    cfg: Any  # the run's resolved config (or the composed one for a base model)
    tokenizer: Any
    model: Any
    run_dir: Path | None
    is_adapter: bool


def run_artifact(run_dir: Path) -> tuple[Path, bool]:
    found = RunDir(run_dir).saved_weights()
    if found is None:
        raise ConfigError(f"run={run_dir} holds no adapter/ or model/ with safetensors weights; did the run finish?")
    return found


def load_run_config(run_dir: Path):
    """The run's resolved config, typed by the schema (enums as enums, newer keys at their defaults)."""
    from medft.config import load_config

    path = RunDir(run_dir).config
    if not path.is_file():
        raise ConfigError(f"run={run_dir} is not a medft run directory (no {RunDir.CONFIG})")
    return load_config(path)


def load_trained(run_dir: Path | str, device: str | None = None) -> LoadedModel:
    """The trained model of a run, ready for generation (eval mode)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medft.modeling import models
    from medft.runtime.devices import device_kind

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    artifact, is_adapter = run_artifact(run_dir)
    device = device or device_kind()
    tokenizer = AutoTokenizer.from_pretrained(str(artifact))
    if is_adapter:
        from peft import PeftModel

        base = models.load_model(cfg.model, cfg.method, device)
        model = PeftModel.from_pretrained(base, str(artifact))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(artifact), dtype=models.torch_dtype(cfg.model.dtype, device))
        model.to(device)
    model.eval()
    return LoadedModel(cfg, tokenizer, model, run_dir, is_adapter)


def load_base(cfg, device: str | None = None) -> LoadedModel:
    """A base model from a composed config (`model=...`), with medft's template on its tokenizer."""
    from omegaconf import OmegaConf

    from medft.modeling import methods, models
    from medft.runtime.devices import device_kind

    device = device or device_kind()
    source = models.resolve_source(cfg.model)
    tokenizer = models.load_tokenizer(cfg.model, source)
    no_quantization = OmegaConf.create({"name": methods.FULL.name.value})
    model = models.load_model(cfg.model, no_quantization, device, source)
    model.eval()
    return LoadedModel(cfg, tokenizer, model, None, False)
