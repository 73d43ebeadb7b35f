"""Load a model and its tokenizer from a model spec (``cfg.model``).

One path for every model: the tiny model is first written to a local checkpoint and
then loaded like a real one. The tokenizer always gets medft's copy of the model's
chat template, so training and inference render conversations identically.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medft.config import DType, MethodName
from medft.runtime.errors import ConfigError
from medft.text.templates import get_spec, load_template


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights come from, as from_pretrained wants it."""

    location: str
    revision: str | None
    trust_remote_code: bool
    is_local: bool

    def describe(self) -> str:
        return self.location if self.is_local else f"{self.location}@{self.revision or 'main'}"


def resolve_source(model_cfg) -> WeightsSource:
    if model_cfg.tiny is not None and model_cfg.path is None:
        from omegaconf import OmegaConf

        from medft.modeling.tiny import materialize

        arch = OmegaConf.to_container(model_cfg.tiny) if not isinstance(model_cfg.tiny, dict) else model_cfg.tiny
        return WeightsSource(str(materialize(arch)), None, False, True)
    if model_cfg.path is not None:
        path = Path(model_cfg.path).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"model.path={model_cfg.path} has no config.json; point it at a folder holding a downloaded copy "
                f"of {model_cfg.hub_id or 'the model'} (config.json, tokenizer and safetensors weights)"
            )
        return WeightsSource(str(path), None, wants_remote_code(model_cfg, str(path), None), True)
    remote = wants_remote_code(model_cfg, model_cfg.hub_id, model_cfg.revision)
    return WeightsSource(model_cfg.hub_id, model_cfg.revision, remote, False)


def _config_dict(location: str, revision: str | None) -> dict | None:
    """config.json as plain data (local folder or the hub cache), or None when unreachable."""
    import json

    local = Path(location) / "config.json"
    if local.is_file():
        return json.loads(local.read_text(encoding="utf-8"))
    text = _hub_config_text(location, revision)
    return None if text is None else json.loads(text)


@functools.lru_cache(maxsize=16)
def _hub_config_text(repo: str, revision: str | None) -> str | None:
    """A hub checkpoint's config.json, fetched once per process: the source is resolved by
    several steps of a run, and each fetch would ask the hub again."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, "config.json", revision=revision)).read_text(encoding="utf-8")
    except Exception:  # offline, gated, missing: the weights load reports it in one line
        return None


def native_model_type(model_type: str | None) -> bool:
    """Whether the installed transformers implements this model_type itself."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type is not None and model_type in CONFIG_MAPPING_NAMES


def wants_remote_code(model_cfg, location: str, revision: str | None) -> bool:
    """``model.trust_remote_code``: true/false as said; auto runs the checkpoint's own code only
    when the installed transformers does not implement its model_type."""
    setting = str(model_cfg.trust_remote_code).lower()
    if setting in ("true", "false"):
        return setting == "true"
    config = _config_dict(location, revision)
    if config is None:
        return False
    return not native_model_type(config.get("model_type")) and bool(config.get("auto_map"))


def model_code(model) -> str:
    """Which code runs the model, for the manifest and the model card."""
    from medft.modeling.families import describe

    try:
        return describe(model).describe_code()
    except ConfigError:
        native = type(model).__module__.startswith("transformers.")
        where = "transformers' native implementation" if native else "the checkpoint's remote code"
        return f"{type(model).__name__} ({where})"


def _unreachable(model_cfg, source: WeightsSource, err: Exception) -> ConfigError:
    return ConfigError(
        f"model={model_cfg.name}: cannot load {source.describe()} ({type(err).__name__}); "
        f"without network access download it elsewhere and set model.path=/path/to/local/copy"
    )


def load_tokenizer(model_cfg, source: WeightsSource | None = None):
    """The model's tokenizer with medft's chat template and explicit pad/eos tokens."""
    from transformers import AutoTokenizer

    source = source or resolve_source(model_cfg)
    spec = get_spec(model_cfg.chat_template)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source.location, revision=source.revision, trust_remote_code=source.trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise _unreachable(model_cfg, source, err) from err
    except Exception as err:  # the checkpoint's own code, imported for its config
        if not source.trust_remote_code:
            raise
        raise remote_code_failed(model_cfg, source, err) from err
    vocab = tokenizer.get_vocab()
    missing = [t for t in (spec.end_of_turn, *spec.special_tokens) if t not in vocab]
    if missing:
        raise ConfigError(
            f"model.chat_template={spec.name} uses tokens the tokenizer of model={model_cfg.name} lacks: "
            f"{', '.join(missing)}; pick the template that belongs to this model"
        )
    own = tokenizer.chat_template
    # Kept for the preflight audit: medft's template must render what the model's own renders.
    tokenizer.medft_model_template = own.get("default") if isinstance(own, dict) else own
    tokenizer.chat_template = load_template(spec.name)
    tokenizer.eos_token = spec.end_of_turn
    if spec.renders_bos and spec.bos_token in vocab:
        tokenizer.bos_token = spec.bos_token
    if tokenizer.pad_token is None:
        if spec.pad_token and spec.pad_token in vocab:
            tokenizer.pad_token = spec.pad_token
        else:
            raise ConfigError(f"model={model_cfg.name} has no pad token and template {spec.name} names none")
    tokenizer.padding_side = "right"
    return tokenizer


def torch_dtype(name: DType | str, device: str):
    import torch

    name = DType(name)
    if name is DType.auto:
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name.value)


def quantization_config(method_cfg):
    """4-bit NF4 (QLoRA) settings for bitsandbytes; None for methods that do not quantize."""
    if MethodName(method_cfg.name) is not MethodName.qlora:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    q = method_cfg.quantization
    compute = DType(q.compute_dtype)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=bool(q.double_quant),
        bnb_4bit_compute_dtype=getattr(torch, compute.value if compute is not DType.auto else "bfloat16"),
    )


def resolve_attention(model_cfg, device: str) -> str:
    """The attention implementation ``model_cfg`` loads with on ``device`` of this machine, as
    medft.config.resolve decides it."""
    from dataclasses import replace

    from medft.config.resolve import attention_for, weights_dtype
    from medft.runtime.devices import device_facts

    facts = replace(device_facts(free_memory=False), kind=device)
    return attention_for(model_cfg.attn_implementation, weights_dtype(model_cfg.dtype, facts), facts)


def load_model(
    model_cfg, method_cfg, device: str, source: WeightsSource | None = None, attention: str | None = None
) -> Any:
    """The causal LM, quantized when the method asks for it; ``attention``: as resolved (default: resolve it)."""
    source = source or resolve_source(model_cfg)
    kwargs: dict[str, Any] = {
        "revision": source.revision,
        "trust_remote_code": source.trust_remote_code,
        "dtype": torch_dtype(model_cfg.dtype, device),
        "attn_implementation": attention or resolve_attention(model_cfg, device),
    }
    quant = quantization_config(method_cfg)
    if quant is not None:
        kwargs["quantization_config"] = quant
        # Each worker of a multi-GPU job puts its 4-bit copy on its own GPU.
        kwargs["device_map"] = {"": local_rank()} if device == "cuda" else {"": "cpu"}
    if source.trust_remote_code:
        model = _load_remote_code(model_cfg, source, kwargs)
    else:
        model = _from_pretrained(model_cfg, source, kwargs)
    if quant is None and device != "cpu":
        model.to(f"cuda:{local_rank()}" if device == "cuda" else device)
    if quant is not None and device == "cpu":
        keep_4bit_layout_trainable(model)
    return model


def local_rank() -> int:
    import os

    return int(os.environ.get("LOCAL_RANK", "0"))


def _from_pretrained(model_cfg, source: WeightsSource, kwargs: dict):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(source.location, **kwargs)
    except (ImportError, RuntimeError, NotImplementedError) as err:
        if "quantization_config" not in kwargs or source.trust_remote_code:
            raise
        raise ConfigError(
            f"method=qlora: 4-bit bitsandbytes cannot run on this machine ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:160]}); use method=lora"
        ) from err
    except (OSError, ValueError) as err:
        if "flash_attn" in str(err) or "FlashAttention" in str(err):
            raise ConfigError(
                "model.attn_implementation=flash_attention_2 needs the flash-attn package and a CUDA GPU; "
                "use model.attn_implementation=sdpa"
            ) from err
        raise _unreachable(model_cfg, source, err) from err


def _load_remote_code(model_cfg, source: WeightsSource, kwargs: dict):
    """The checkpoint's own modeling code, asked for with model.trust_remote_code=true.

    Hub code is written against the transformers release of its day and breaks on later
    ones (EXAONE 3.5's calls create_causal_mask with arguments 5.24 no longer takes), at
    import or only at the first forward; both are tried here so the failure is one line
    that names the native path, not a traceback halfway into training.
    """
    try:
        model = _from_pretrained(model_cfg, source, kwargs)
        _first_forward(model)
    except ConfigError:
        raise
    except Exception as err:  # whatever the checkpoint's code raises
        raise remote_code_failed(model_cfg, source, err) from err
    return model


def remote_code_failed(model_cfg, source: WeightsSource, err: Exception) -> ConfigError:
    """One line for a checkpoint whose own code cannot run here, naming the way out."""
    native = native_model_type((_config_dict(source.location, source.revision) or {}).get("model_type"))
    fix = (
        "transformers implements this model natively: set model.trust_remote_code=auto"
        if native
        else "upgrade transformers or pin model.revision to code written for this release"
    )
    detail = str(err).splitlines()[0][:160] if str(err) else ""
    return ConfigError(
        f"model={model_cfg.name}: the checkpoint's remote code ({source.describe()}) fails on transformers "
        f"{_transformers_version()} ({type(err).__name__}: {detail}); {fix}"
    )


def _first_forward(model) -> None:
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        model(
            input_ids=torch.tensor([[1, 2, 3]], device=device),
            attention_mask=torch.ones(1, 3, dtype=torch.long, device=device),
            use_cache=False,
        )


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def keep_4bit_layout_trainable(model) -> None:
    """Stop bitsandbytes from re-laying out 4-bit weights for its CPU inference kernel.

    On CPUs with AVX512-BF16, the first eval-mode forward without grad (the step-0
    evaluation, any probe) permanently converts each Linear4bit weight to a layout whose
    kernel (gemv_4bit) has no autograd: every later training step then silently drops the
    gradient that should flow back through the frozen base layers to earlier adapters.
    The plain dequantize path is slower for inference but differentiable.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load_config(model_cfg, source: WeightsSource | None = None):
    """The model's config.json alone (no weights), for early checks and memory planning."""
    from transformers import AutoConfig

    source = source or resolve_source(model_cfg)
    try:
        return AutoConfig.from_pretrained(
            source.location, revision=source.revision, trust_remote_code=source.trust_remote_code
        )
    except (OSError, ValueError) as err:
        if source.trust_remote_code and source.is_local:
            raise remote_code_failed(model_cfg, source, err) from err
        raise _unreachable(model_cfg, source, err) from err
    except Exception as err:  # the checkpoint's own configuration code
        if not source.trust_remote_code:
            raise
        raise remote_code_failed(model_cfg, source, err) from err


def num_decoder_layers(model_cfg, source: WeightsSource | None = None) -> int | None:
    """Read the layer count from config.json alone (no weights), for early checks."""
    config = load_config(model_cfg, source)
    for key in ("num_hidden_layers", "num_layers", "n_layer"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def keep_checkpoint_identity(folder: Path, model_cfg) -> None:
    """Make a saved model's config.json describe the checkpoint it holds, as its source did.

    transformers saves a natively loaded EXAONE with LG's key names (its conversion mapping
    renames them back) but writes ``architectures: [LlamaForCausalLM]``, which tools that pick
    the class by that field (vLLM, SGLang) would load with Llama's key names, and keeps an
    ``auto_map`` pointing at code files the folder does not have. The source's architectures
    come back; an ``auto_map`` whose files are missing is dropped (the folder loads natively).
    """
    import json

    path = Path(folder) / "config.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    source = resolve_source(model_cfg)
    original = _config_dict(source.location, source.revision) or {}
    changed = False
    if original.get("model_type") == saved.get("model_type") and original.get("architectures"):
        changed = saved.get("architectures") != original["architectures"]
        saved["architectures"] = original["architectures"]
    auto_map = saved.get("auto_map") or {}
    modules = {str(ref).split("--")[-1].split(".")[0] for ref in auto_map.values()}
    if auto_map and not all((Path(folder) / f"{m}.py").is_file() for m in modules):
        del saved["auto_map"]
        changed = True
    if changed:
        path.write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
