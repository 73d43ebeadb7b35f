"""``train``: the optimisation loop and its switches (set on the command line or by experiment presets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from medft.config.schema.fields import setting


@dataclass
class TrainConfig:
    epochs: float = setting(3.0, "Passes over the training split (fractions allowed); max_steps > 0 wins.")
    max_steps: int = setting(-1, "Stop after this many optimizer steps (-1: as epochs says).")
    per_device_batch_size: int = setting(4, "Training rows (or packed rows) per device per micro-step; >= 1.")
    eval_batch_size: int = setting(8, "Rows per device per validation step.")
    gradient_accumulation_steps: int = setting(
        1, "Micro-steps per optimizer step; the effective batch is this x per_device_batch_size x workers."
    )
    learning_rate: float = setting(2e-4, "Peak learning rate; > 0.")
    lr_scheduler: str = setting(
        "linear", "Learning-rate schedule after warmup (transformers' names: linear, cosine...)."
    )
    warmup_ratio: float = setting(0.0, "Warmup as a fraction of all steps, in [0, 1); warmup_steps > 0 wins.")
    warmup_steps: int = setting(0, "Warmup in optimizer steps (0: as warmup_ratio says).")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    max_grad_norm: float = setting(1.0, "Clip the gradient norm to this.")
    optim: str = setting("adamw_torch", "Optimizer (transformers' names: adamw_torch, paged_adamw_8bit...).")
    max_length: int = setting(1024, "Tokens per training row; longer conversations are cut to fit. >= 16.")
    bf16: Optional[bool] = setting(
        None, "bfloat16 mixed precision. null = auto: on with CUDA where the GPU supports it, off on CPU."
    )
    gradient_checkpointing: Optional[bool] = setting(
        None,
        "Recompute activations in the backward pass (less memory, about 30% more compute). null = auto: off on "
        "CPU; on CUDA on where the memory check says the run needs it (on when unplanned).",
    )
    packing: Optional[bool] = setting(
        None,
        "Pack whole rows (best fit) with per-row position ids. null = auto: on with a variable-length attention "
        "kernel (flash attention) when a probe shows the model keeps packed rows apart; off otherwise "
        "(length-grouped batches are faster there).",
    )
    fused_loss: Optional[bool] = setting(
        None,
        "TRL's fused LM head + loss (chunked: never builds the tokens x vocab logits; adds entropy and token-"
        "accuracy metrics). null = auto: on with CUDA, where it saves memory; off on CPU, where medft's plain "
        "loss (LM head on supervised positions only) is faster and lighter.",
    )
    liger: Optional[bool] = setting(
        None,
        "Liger kernels (fused RMSNorm/RoPE/SwiGLU/cross-entropy). null = auto: on with CUDA when liger-kernel "
        "is installed and the architecture is one it patches.",
    )
    tf32: Optional[bool] = setting(None, "TF32 matmuls on Ampere or newer GPUs. null = auto: on with CUDA there.")
    group_by_length: Optional[bool] = setting(
        None, "Batches of rows of similar length (less padding). null = auto: on when packing is off."
    )
    memory_check: bool = setting(
        True,
        "On CUDA, estimate the memory before loading the model: refuse in one line with settings that fit when "
        "it cannot, and checkpoint activations only when needed.",
    )
    logging_steps: int = setting(5, "Log the training loss every N optimizer steps.")
    eval_steps: int = setting(0, "Evaluate on the validation split every N optimizer steps (0: once per epoch).")
    save_strategy: str = setting("epoch", "When to write checkpoints when save_steps is 0: epoch, steps or no.")
    save_steps: int = setting(
        0,
        "Checkpoint every N optimizer steps (0: as save_strategy says). Checkpoints are what resume=auto "
        "continues from after a crash; SIGTERM always writes one.",
    )
    save_total_limit: int = setting(2, "Keep at most this many checkpoints (oldest deleted first).")
    load_best_model_at_end: bool = setting(
        False, "Keep the checkpoint with the lowest validation loss as the run's model; needs checkpoints."
    )
    dataloader_num_workers: int = setting(0, "Worker processes loading batches (0: in the training process).")
    use_cpu: bool = setting(False, "Train on CPU even when a GPU is present.")
    eval_benchmarks: List[str] = setting(
        help="Benchmarks (conf/eval/ names) scored at the end of training, and every eval_benchmarks_every steps; "
        "results go to <run>/eval/ and W&B.",
        factory=list,
    )
    eval_benchmarks_every: int = setting(0, "Score eval_benchmarks every N optimizer steps too (0: at the end only).")
