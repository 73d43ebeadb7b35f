"""Leave out the padding mask of right-padded batches where causal attention makes it redundant.

In a right-padded batch every pad comes after the last real token of its row, so under
causal attention no real position can see a pad: the padding mask changes only the
outputs at pad positions, and no label reads those (the collator sets their labels to
-100). Without it, SDPA runs its causal kernel: on CPU it no longer saves an expanded
float mask per layer for backward (~15 MiB per layer at 4 x 1000 tokens) and skips the
masked blocks, and on CUDA it may take the flash backend, which takes no mask.

transformers drops the mask only when it is all ones; a right-padded training batch
always has zeros, so the library's own check does not apply here.
Kept as is: varlen kernels (flash-attention unpads the batch with the mask and skips
the pads' compute), packed batches (they carry ``position_ids`` and no padding mask),
left padding, any mask that is not 2-D, and models whose modeling code is not
transformers' own (remote code brings its own attention, so its handling of a missing
mask is not assumed).
"""

from __future__ import annotations

from medft.text.labels import IGNORE_INDEX

# Attention implementations whose result at real positions is the same with the causal mask alone.
CAUSAL_ONLY_SAFE = ("sdpa", "eager")


def causal_only_attention(model) -> str | None:
    """The attention implementation to hand ``without_redundant_padding_mask``: the model's
    own where its modeling code ships with transformers, else None (the mask is kept)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not type(base).__module__.startswith("transformers."):
        return None
    return getattr(base.config, "_attn_implementation", None)


def is_right_padded(attention_mask) -> bool:
    """Every row is ones then zeros (its real tokens first, its pads last)."""
    import torch

    if attention_mask.dim() != 2:
        return False
    lengths = attention_mask.sum(dim=1, keepdim=True)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return bool(torch.equal(attention_mask.bool(), positions.unsqueeze(0) < lengths))


def _pads_unlabelled(attention_mask, labels) -> bool:
    return labels is None or bool((labels[attention_mask == 0] == IGNORE_INDEX).all())


def without_redundant_padding_mask(inputs: dict, attn_implementation: str | None) -> dict:
    """``inputs`` without ``attention_mask`` where that changes nothing the loss reads."""
    mask = inputs.get("attention_mask")
    if (
        mask is None
        or attn_implementation not in CAUSAL_ONLY_SAFE
        or "position_ids" in inputs
        or not is_right_padded(mask)
        or not _pads_unlabelled(mask, inputs.get("labels"))
    ):
        return inputs
    return {key: value for key, value in inputs.items() if key != "attention_mask"}
