"""Project only the supervised positions through the LM head.

The loss needs logits only where the next token's label is kept (the assistant's turns).
A causal LM's own forward projects every position, prompt and padding too, and keeps the
``positions x vocab`` float32 logits, their log-softmax and gradient for the backward pass:
on medical QA rows a quarter of that work and memory is for positions the loss ignores.

Why not the libraries' own mechanisms: ``logits_to_keep`` selects the same positions in
every row of a batch, and TRL's fused head compacts per row only on Triton devices (it
scores every position elsewhere, and recomputes the logits in backward). Here a forward
pre-hook on the output embedding hands it the supervised hidden states alone, so the
model's forward (and whatever wraps it: PEFT, DDP, FSDP) runs unchanged, and the loss is
the model's cross-entropy computed on those rows.
"""

from __future__ import annotations

from contextlib import contextmanager

from medft.runtime.errors import ConfigError
from medft.text.labels import IGNORE_INDEX


def next_token_mask(labels):
    """Positions whose next token is supervised: where the causal LM's logits enter the loss."""
    import torch

    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return mask


@contextmanager
def project_supervised_only(head, labels):
    """While active, ``head`` (the model's output embedding) sees only the hidden states of
    the positions ``next_token_mask(labels)`` keeps, flattened row by row to ``[N, hidden]``."""
    mask = next_token_mask(labels)

    def keep_supervised(module, args):
        hidden = args[0]
        if hidden.dim() != 3 or tuple(hidden.shape[:2]) != tuple(mask.shape):
            raise ConfigError(
                f"train.fused_loss=false: the LM head received hidden states of shape {tuple(hidden.shape)} "
                "for labels of shape "
                f"{tuple(mask.shape)}; this model cannot score supervised positions only: set train.fused_loss=true"
            )
        return (hidden[mask.to(hidden.device)], *args[1:])

    handle = head.register_forward_pre_hook(keep_supervised)
    try:
        yield
    finally:
        handle.remove()


def supervised_cross_entropy(outputs, labels, num_items_in_batch=None):
    """The causal LM loss (transformers' ``ForCausalLMLoss``) on logits of the supervised
    positions only: summed and divided by ``num_items_in_batch`` (the supervised tokens of
    the whole accumulated batch) when given, else the mean over this batch's."""
    import torch.nn.functional as F

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    shifted = labels[:, 1:]
    targets = shifted[shifted != IGNORE_INDEX].to(logits.device)
    if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
        raise ConfigError(
            f"train.fused_loss=false: expected logits for {targets.shape[0]} supervised positions, got shape "
            f"{tuple(logits.shape)}; "
            "this model cannot score supervised positions only: set train.fused_loss=true"
        )
    logits = logits.float()
    if num_items_in_batch is None:
        return F.cross_entropy(logits, targets, reduction="mean")
    if hasattr(num_items_in_batch, "to"):
        num_items_in_batch = num_items_in_batch.to(logits.device)
    return F.cross_entropy(logits, targets, reduction="sum") / num_items_in_batch
