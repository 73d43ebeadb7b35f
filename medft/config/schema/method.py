"""``method``: which weights train (conf/method/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from omegaconf import MISSING

from medft.config.schema.enums import DType, LoraTarget, MethodName
from medft.config.schema.fields import setting


@dataclass
class LoraSettings:
    r: int = setting(16, "Rank of the adapter matrices.")
    alpha: int = setting(32, "Scale of the adapter's update (alpha / r, or alpha / sqrt(r) with use_rslora).")
    dropout: float = setting(0.05, "Dropout on the adapter's input.")
    target: LoraTarget = setting(
        LoraTarget.all,
        "Which block roles get adapters: all (attention and MLP), attention (q/k/v/o) or mlp (gate/up/down); "
        "the module names come from the loaded model.",
    )
    target_modules: Optional[List[str]] = setting(
        None, "Explicit module names; when set, they replace the roles of target."
    )
    use_rslora: bool = setting(False, "Rank-stabilised scaling (alpha / sqrt(r)).")
    use_dora: bool = setting(False, "Weight-decomposed adapters (DoRA).")


@dataclass
class QuantizationSettings:
    quant_type: str = setting("nf4", "4-bit data type of the frozen base weights (nf4 or fp4).")
    double_quant: bool = setting(True, "Quantize the quantization constants too (saves about 0.4 bits a weight).")
    compute_dtype: DType = setting(
        DType.bfloat16, "Dtype the 4-bit weights are dequantized to for matmuls; auto means bfloat16."
    )


@dataclass
class MethodConfig:
    name: MethodName = setting(
        MISSING,
        "lora: adapters on a frozen base; qlora: adapters on a 4-bit base; freeze: train the top decoder blocks "
        "only; full: train every weight.",
    )
    lora: Optional[LoraSettings] = setting(None, "Adapter settings; required by lora and qlora.")
    quantization: Optional[QuantizationSettings] = setting(
        None, "4-bit quantization of the base; required by qlora, refused by the other methods."
    )
    trainable_layers: Optional[int] = setting(
        None, "freeze: how many of the top decoder blocks to train (lm_head is trained with them)."
    )
    train_lm_head: bool = setting(True, "freeze: train the LM head along with the top blocks.")
