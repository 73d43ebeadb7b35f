"""GPU memory planner: estimate a training step's peak memory from the model's shape alone.

``check_fits`` runs before any weights are loaded: it reads the model's ``config.json``
(the same light read as :func:`medft.modeling.models.num_decoder_layers`), estimates the peak of
one training step under the composed config, and refuses with one line naming overrides
that fit when the estimate exceeds the free GPU memory. ``estimate`` and ``suggest`` are
the parts underneath, usable on their own (``benchmarks/memory.py`` compares them with
measured peaks).

What is counted, in bytes (``Estimate``):

- ``weights``: every parameter at its storage width. QLoRA: the decoder blocks' linear
  layers in 4-bit NF4 plus their quantization constants; embeddings, lm_head and norms in
  float32, because PEFT's ``prepare_model_for_kbit_training`` upcasts every parameter that
  is not 4-bit. LoRA adapters are float32 (PEFT keeps them so under a 16-bit base).
- ``gradients`` and ``optimizer``: one gradient and two AdamW moments per trainable
  parameter, in float32: trainable base weights keep float32 masters whatever the frozen
  ones load in (torch's AdamW keeps its state like the params).
- ``activations``: the tensors autograd saves for backward (derivation below), at the end
  of the forward pass; with gradient checkpointing, the checkpointed block inputs, and
  (``recompute``) one block's activations rebuilt at a time during backward.
- ``logits``: the loss head's transient peak. medft trains through TRL's ``SFTTrainer``,
  which patches a chunked LM head (``trl.kernels.ChunkedLogProbFunction``): the
  ``tokens x vocab`` logits are never materialized, only tiles of at most
  4096 x 32768 plus float32 gradient accumulators for the hidden states (and for lm_head
  when it trains). ``loss="full"`` models medft's plain loss instead (``train.fused_loss=false``,
  ``medft.training.supervised_head``): logits, a float32 upcast, log-softmax and their gradients,
  12 bytes per token x vocab at the peak. It projects only the supervised positions, so the
  plan counts every position as supervised: the most a batch of that shape can take.
- ``optimizer_step``: scratch of ``optimizer.step()`` (foreach AdamW on CUDA allocates one
  copy of the second moments), live when the activations are gone.
- ``overhead``: CUDA context and allocator slack, kept apart so that
  ``peak_allocated`` compares with ``torch.cuda.max_memory_allocated`` (which excludes it).

The peak counts what is live at once (``Estimate.peak_allocated``): backward starts with all
saved activations and the loss head's buffers; a checkpointed block is recomputed only after
the loss head has freed its buffers; full and freeze gradients grow while the activations
of their blocks are freed, and meet the optimizer step's scratch at the end:
``weights + optimizer + max(activations + max(logits, recompute) [+ LoRA gradients],
gradients + max(optimizer_step, recompute))``.

The package is imported before training starts; it must not import torch at module level.
Modules: ``shape`` (the model's dimensions, the method's settings), ``activations`` (what
autograd saves), ``estimate`` (the components and the peak), ``suggest`` (overrides that fit),
``plan`` (the planner under a composed config and its resolved settings).
"""

from medft.training.memory.estimate import GIB, Estimate, estimate
from medft.training.memory.plan import LIGER_MODEL_TYPES, check_fits, estimate_for_config, plan_memory
from medft.training.memory.shape import ModelShape, lora_roles, shape_from_source
from medft.training.memory.suggest import Suggestion, suggest

__all__ = [
    "GIB",
    "LIGER_MODEL_TYPES",
    "Estimate",
    "ModelShape",
    "Suggestion",
    "check_fits",
    "estimate",
    "estimate_for_config",
    "lora_roles",
    "plan_memory",
    "shape_from_source",
    "suggest",
]
