"""Config schemas (dataclasses registered in Hydra's ConfigStore) and cross-field rules.

The YAML files under ``conf/`` are merged onto these schemas, so an unknown key or a
value of the wrong type fails at compose time. Rules that span several keys live in
:func:`validate`, which raises a one-line :class:`~medft.runtime.errors.ConfigError`.

This module must stay light: it is imported by ``--help`` and ``--cfg job``, which
must not pay for torch or transformers.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from medft.runtime.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SAMPLES_DIR = PACKAGE_DIR / "samples"


def _find_conf_dir() -> Path:
    """The config tree sits next to the package in a checkout (``conf/``)."""
    for candidate in (PACKAGE_DIR.parent / "conf", PACKAGE_DIR / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(f"medft config tree not found next to {PACKAGE_DIR}; reinstall with `pip install -e .`")


CONF_DIR = _find_conf_dir()


# --------------------------------------------------------------------------- enums
class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Attention(str, Enum):
    # auto: flash_attention_2 on CUDA when flash-attn is installed, else sdpa.
    auto = "auto"
    eager = "eager"
    sdpa = "sdpa"
    flash_attention_2 = "flash_attention_2"


class MethodName(str, Enum):
    lora = "lora"
    qlora = "qlora"
    freeze = "freeze"
    full = "full"


class LoraTarget(str, Enum):
    """Which block roles get adapters; medft.modeling.families finds their names on the loaded model."""

    all = "all"
    attention = "attention"
    mlp = "mlp"


class SourceKind(str, Enum):
    aihub = "aihub"
    pubmedqa_ko = "pubmedqa_ko"
    hira = "hira"
    hira_csv = "hira_csv"


class Pairing(str, Enum):
    first = "first"
    random = "random"
    all = "all"


class EvalKind(str, Enum):
    kormedmcqa = "kormedmcqa"
    pubmedqa_ko = "pubmedqa_ko"
    heldout = "heldout"


class LoggerBackend(str, Enum):
    wandb = "wandb"
    none = "none"


# --------------------------------------------------------------------------- model
@dataclass
class TinyArchitecture:
    """A small random Llama built from config, for offline runs and tests."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    seed: int = 0


@dataclass
class GenerationDefaults:
    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.0
    do_sample: bool = True


@dataclass
class ModelConfig:
    name: str = MISSING
    hub_id: Optional[str] = None
    revision: Optional[str] = None
    # A local copy (a folder with config.json and weights); wins over hub_id.
    path: Optional[str] = None
    # auto: transformers' own implementation when the installed release knows the checkpoint's
    # model_type (EXAONE 3.5 since 5.24), the checkpoint's remote code only otherwise;
    # true: always the remote code (at the pinned revision); false: never.
    trust_remote_code: str = "auto"
    dtype: DType = DType.auto
    attn_implementation: Attention = Attention.sdpa
    chat_template: str = MISSING
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)
    license: str = ""
    # Set only for `model=tiny`: build a random model of this shape instead of downloading.
    tiny: Optional[TinyArchitecture] = None


# --------------------------------------------------------------------------- data
@dataclass
class SourceConfig:
    """One data source. Fields that do not apply to a source's kind are ignored."""

    kind: SourceKind = MISSING
    path: Optional[str] = None
    hub_id: Optional[str] = None
    revision: Optional[str] = None
    # AI Hub 71762: questions and answers share no id; pair them inside each
    # category/disease/intention folder with this policy.
    pairing: Pairing = Pairing.first
    pairing_cap: int = 3
    # Keep at most this many training records from this source (None: all).
    max_records: Optional[int] = None
    # Mixtures: this source's share of the training rows relative to the other sources'
    # weights (None: all of its rows, unweighted). Rows are sampled without replacement.
    weight: Optional[float] = None
    system_prompt: Optional[str] = None
    # hira_csv: YAML of question/answer templates per table (None: the shipped ones), and the
    # number of phrasings generated per table row and measure.
    templates: Optional[str] = None
    phrasings: int = 2
    # Text encoding of CSV input; None detects utf-8-sig, CP949, EUC-KR in that order.
    encoding: Optional[str] = None


@dataclass
class DataConfig:
    name: str = MISSING
    sources: Dict[str, SourceConfig] = field(default_factory=dict)
    system_prompt: Optional[str] = None
    # Fractions carved from training when a source has no such split of its own.
    validation_ratio: float = 0.1
    test_ratio: float = 0.1
    seed: int = 42
    # Fail the run when skipped/read of any source exceeds this.
    max_skip_ratio: float = 0.05
    # The same normalised question or answer in two splits fails the run unless this is true
    # (then it is kept in one split, dropped from the others, and counted).
    allow_leakage: bool = False
    # Benchmarks (conf/eval/ names) whose questions the training data must not hold, checked
    # together with train.eval_benchmarks by medft.cli.train and medft.cli.prepare.
    contamination_benchmarks: List[str] = field(default_factory=list)
    # A benchmark question found in the train or validation split fails the run unless this
    # is true (then it is only reported in data_report.json).
    allow_contamination: bool = False
    # Texts longer than this many characters are skipped (counted by reason).
    max_text_chars: int = 20000
    # Mask resident registration numbers, phone numbers and e-mail addresses.
    mask_personal_data: bool = True
    # Where prepared datasets are cached (None: $MEDFT_CACHE/prepared, ~/.cache/medft/prepared).
    cache_dir: Optional[str] = None


# --------------------------------------------------------------------------- method
@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target: LoraTarget = LoraTarget.all
    # Explicit module names; when set, they replace the roles of `target`.
    target_modules: Optional[List[str]] = None
    use_rslora: bool = False
    use_dora: bool = False


@dataclass
class QuantizationSettings:
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: DType = DType.bfloat16


@dataclass
class MethodConfig:
    name: MethodName = MISSING
    lora: Optional[LoraSettings] = None
    quantization: Optional[QuantizationSettings] = None
    # freeze: how many of the top decoder blocks to train (lm_head is trained with them).
    trainable_layers: Optional[int] = None
    train_lm_head: bool = True


# --------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    epochs: float = 3.0
    max_steps: int = -1
    per_device_batch_size: int = 4
    eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    max_length: int = 1024
    # null = auto: medft decides per device (bf16 and checkpointing on for CUDA, off on CPU).
    bf16: Optional[bool] = None
    gradient_checkpointing: Optional[bool] = None
    # Packing of whole rows (best fit) with per-row position ids; null = auto: on with a
    # variable-length attention kernel (flash attention) when a probe shows the model keeps
    # packed rows apart, off otherwise (length-grouped batches are faster there).
    packing: Optional[bool] = None
    # TRL's fused LM head + loss (chunked: never builds the tokens x vocab logits, adds
    # entropy and token-accuracy metrics); null = auto: on with CUDA, where it saves memory;
    # off on CPU, where medft's plain loss (LM head on supervised positions only) is faster
    # and lighter (measured).
    fused_loss: Optional[bool] = None
    # Liger kernels (fused RMSNorm/RoPE/SwiGLU/cross-entropy); null = auto: on with CUDA when
    # liger-kernel is installed and the architecture is one it patches.
    liger: Optional[bool] = None
    # TF32 matmuls on Ampere or newer GPUs; null = auto: on with CUDA.
    tf32: Optional[bool] = None
    # Batches of similar length when packing is off (less padding); null = auto: on then.
    group_by_length: Optional[bool] = None
    # On CUDA, estimate the memory before loading the model (medft.training.memplan): refuse in one
    # line with settings that fit when it cannot, and checkpoint activations only when needed.
    memory_check: bool = True
    logging_steps: int = 5
    # Evaluate every N optimizer steps (0: once per epoch).
    eval_steps: int = 0
    save_strategy: str = "epoch"
    # Checkpoint every N optimizer steps (0: as save_strategy says). Checkpoints are what
    # resume=auto continues from after a crash; SIGTERM always writes one.
    save_steps: int = 0
    save_total_limit: int = 2
    load_best_model_at_end: bool = False
    dataloader_num_workers: int = 0
    use_cpu: bool = False
    # Benchmarks (conf/eval/ names) scored at the end of training, and every N steps when
    # eval_benchmarks_every > 0; results go to <run>/eval/ and W&B.
    eval_benchmarks: List[str] = field(default_factory=list)
    eval_benchmarks_every: int = 0


@dataclass
class EvalConfig:
    """A benchmark: where its data comes from and how it is scored."""

    name: str = MISSING
    kind: EvalKind = MISSING
    hub_id: Optional[str] = None
    revision: Optional[str] = None
    # A local copy (file or folder); wins over hub_id. Offline without one is an error.
    path: Optional[str] = None
    # KorMedMCQA configs (doctor, nurse, pharm, dentist).
    subsets: List[str] = field(default_factory=list)
    split: str = "test"
    fewshot: int = 0
    # Score at most this many items per subset (None: all).
    limit: Optional[int] = None
    max_new_tokens: int = 32
    batch_size: int = 8
    # true: prompts go through the model's chat template, the format a medft run was trained
    # on (few-shot examples become earlier turns); false: the raw text prompt, as
    # lm-evaluation-harness sends it by default. Heldout always uses the template.
    use_chat_template: bool = True


@dataclass
class ChatConfig:
    """Conversation settings shared by medft.cli.chat and medft.serving.server."""

    system_prompt: Optional[str] = (
        "당신은 한국어 의료 상담 도우미입니다. 증상이 모호하면 먼저 언제부터, 어디가, 얼마나 심한지 되물어 "
        "확인하세요. 답변은 일반적인 건강 정보이며, 진단과 치료는 반드시 의사의 확인이 필요하다고 알려 주세요."
    )
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 512
    host: str = "127.0.0.1"
    port: int = 7860


class MergeBase(str, Enum):
    """The weights a QLoRA adapter is added to on export."""

    dequantized = "dequantized"
    original = "original"


@dataclass
class ExportConfig:
    """medft.runs.export: merge adapters into the base and write a shippable model folder."""

    merge: bool = True
    # 16-bit for shipping; float32 keeps the merge exact (e.g. to compare with the adapter).
    dtype: DType = DType.bfloat16
    # Where to write (None: <run>/merged).
    output: Optional[str] = None
    # A hub repo id to upload to; the token comes from HF_TOKEN in the environment only.
    push_to_hub: Optional[str] = None
    private: bool = True
    max_shard_size: str = "5GB"
    # What a QLoRA adapter is merged into: dequantized = the NF4 weights it trained against, so the
    # export is the trained model; original = the 16-bit checkpoint, off by the quantization error.
    merge_base: MergeBase = MergeBase.dequantized
    # Held-out rows on which the exported model's logits are compared with the trained model's (0: skip).
    fidelity_rows: int = 4


@dataclass
class LoggerConfig:
    backend: LoggerBackend = LoggerBackend.wandb
    project: str = "medft"
    entity: Optional[str] = None
    # online | offline | disabled; None: WANDB_MODE, else online with an API key, else offline.
    mode: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    # Upload the run's adapter/ or model/ folder as a W&B model artifact when training ends.
    log_model: bool = False


class Strategy(str, Enum):
    ddp = "ddp"
    fsdp = "fsdp"
    deepspeed_zero2 = "deepspeed_zero2"
    deepspeed_zero3 = "deepspeed_zero3"


@dataclass
class LauncherConfig:
    """Workers per job. N > 1: medft freezes the config and starts torchrun itself."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    # Multi-node rendezvous: host:port of node 0 (all nodes pass the same value).
    rdzv_endpoint: Optional[str] = None
    # ddp: torchrun + DistributedDataParallel. The others go through `accelerate launch`
    # with the matching file in conf/accelerate/.
    strategy: Strategy = Strategy.ddp
    # Your own accelerate config file instead of the shipped one for `strategy` (conf/accelerate/<strategy>.yml).
    accelerate_config: Optional[str] = None


@dataclass
class RootConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # Set by experiment presets; also the default W&B group.
    name: Optional[str] = None
    seed: int = 42
    # evaluate/export/chat/serve: the training run directory to load.
    run: Optional[str] = None
    eval: Optional[EvalConfig] = None
    chat: ChatConfig = field(default_factory=ChatConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    # auto: continue the latest complete checkpoint (of the newest unfinished run with the
    # same overrides, or of each job's dir in a sweep); or a run dir / checkpoint path.
    resume: Optional[str] = None
    # The metrics.json key (dotted for nested) that train returns and sweeps optimise.
    objective: str = "eval_loss"
    launcher: LauncherConfig = field(default_factory=LauncherConfig)


def register_schemas() -> None:
    """Make the schema available to ``conf/train.yaml`` as ``medft_schema``."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="medft_schema", node=RootConfig)


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("medft"):
        # ${medft:samples} -> the shipped sample data, wherever the package is installed.
        places = {"samples": str(SAMPLES_DIR), "package": str(PACKAGE_DIR)}
        OmegaConf.register_new_resolver("medft", lambda key: places[key])
    if not OmegaConf.has_resolver("medft_slug"):
        # Sweep job folders are named after their overrides; paths in overrides must not nest folders.
        OmegaConf.register_new_resolver("medft_slug", slug)


def slug(text: str, limit: int = 96) -> str:
    cleaned = re.sub(r"[^\w.,=+-]+", "_", str(text)).strip("_")
    return cleaned[:limit] or "defaults"


_register_resolvers()


# --------------------------------------------------------------------------- rules
def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


REMOTE_CODE_CHOICES = ("auto", "true", "false")


def validate(cfg: DictConfig | Any) -> None:
    """Cross-field rules: raise one ConfigError naming the key and the fix."""
    method = cfg.method
    name = MethodName(method.name)
    if name in (MethodName.lora, MethodName.qlora) and method.lora is None:
        raise ConfigError(f"method={name.value} needs method.lora settings; use a method config from conf/method/")
    if name is MethodName.qlora:
        if method.quantization is None:
            raise ConfigError("method=qlora needs method.quantization; use conf/method/qlora.yaml")
        if not bitsandbytes_available():
            raise ConfigError(
                "method=qlora needs 4-bit bitsandbytes, which is not installed here; "
                "`pip install bitsandbytes` or use method=lora"
            )
        tiny = cfg.model.tiny
        if tiny is not None and (tiny.hidden_size % 64 or tiny.intermediate_size % 64):
            raise ConfigError(
                "method=qlora quantizes in blocks of 64: model.tiny.hidden_size and model.tiny.intermediate_size "
                "must be multiples of 64"
            )
    if name is not MethodName.qlora and method.quantization is not None:
        raise ConfigError(f"method.quantization is set but method={name.value} does not quantize; use method=qlora")
    if name is MethodName.freeze:
        k = method.trainable_layers
        if k is None or k < 1:
            raise ConfigError(f"method.trainable_layers={k} must be a positive number of top decoder blocks to train")
    elif method.trainable_layers is not None:
        raise ConfigError(f"method.trainable_layers only applies to method=freeze, not method={name.value}")
    if str(cfg.model.trust_remote_code).lower() not in REMOTE_CODE_CHOICES:
        raise ConfigError(f"model.trust_remote_code={cfg.model.trust_remote_code} must be one of auto, true, false")
    if cfg.model.hub_id is None and cfg.model.path is None and cfg.model.tiny is None:
        raise ConfigError(f"model={cfg.model.name} names no weights: set model.hub_id or model.path")
    if not cfg.data.sources:
        raise ConfigError("data.sources is empty: pick a data config, e.g. data=sample or data=aihub")
    for key in ("validation_ratio", "test_ratio"):
        value = cfg.data[key]
        if not 0.0 <= value < 0.5:
            raise ConfigError(f"data.{key}={value} must be in [0, 0.5)")
    train = cfg.train
    if train.per_device_batch_size < 1 or train.gradient_accumulation_steps < 1:
        raise ConfigError("train.per_device_batch_size and train.gradient_accumulation_steps must be >= 1")
    if train.max_length < 16:
        raise ConfigError(f"train.max_length={train.max_length} is too short for a chat turn; use >= 16")
    if train.learning_rate <= 0:
        raise ConfigError(f"train.learning_rate={train.learning_rate} must be > 0")
    if not 0.0 <= train.warmup_ratio < 1.0:
        raise ConfigError(f"train.warmup_ratio={train.warmup_ratio} must be in [0, 1)")
    if train.load_best_model_at_end and train.save_strategy == "no":
        raise ConfigError("train.load_best_model_at_end=true needs checkpoints; set train.save_strategy=epoch or steps")
    if train.save_steps < 0:
        raise ConfigError(f"train.save_steps={train.save_steps} must be >= 0 (0: save as train.save_strategy says)")
    launcher = cfg.get("launcher")
    if launcher is not None and (launcher.nproc_per_node < 1 or launcher.nnodes < 1):
        raise ConfigError("launcher.nproc_per_node and launcher.nnodes must be >= 1")
    if launcher is not None and launcher.nnodes > 1 and not launcher.rdzv_endpoint:
        raise ConfigError("launcher.nnodes > 1 needs launcher.rdzv_endpoint=<node-0 host>:<port> on every node")
    if cfg.logger.mode not in (None, "online", "offline", "disabled"):
        raise ConfigError(f"logger.mode={cfg.logger.mode} must be one of online, offline, disabled")


def to_container(cfg: DictConfig) -> dict:
    """The resolved config as plain data (enums as their values)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
