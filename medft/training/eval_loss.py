"""Validation loss as the summed NLL of every supervised token over their number.

transformers' ``Trainer.evaluation_loop`` takes each batch's loss (a mean over that batch's
tokens), repeats it once per row and averages the rows: a row-weighted mean of batch means,
so the number moves with ``train.eval_batch_size`` and differs from the per-token loss of
``eval=heldout``. Neither transformers nor TRL offers a switch for a token-weighted mean
(``num_items_in_batch`` is counted per batch in evaluation, and TRL's ``prediction_step``
drops it), so the trainer (``medft.training.trainer``) keeps, per sequence, the NLL sum and
token count of the loss it already computes, gathers them across ranks as the Trainer
gathers its losses (``gather_for_metrics``, which drops the rows DDP repeats to even out
the last batch) and divides the totals at the end.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from medft.text.labels import IGNORE_INDEX


@contextmanager
def captured_output(module):
    """While active, ``holder.output`` is ``module``'s latest forward output (the loss computation's own)."""
    holder = _Holder()

    def keep(mod, args, output):
        holder.output = output

    handle = module.register_forward_hook(keep)
    try:
        yield holder
    finally:
        handle.remove()


@dataclass
class _Holder:
    output: object = None


def token_nll(output, labels):
    """Per-position NLL of the next token and the mask of supervised positions, both ``[rows, positions]``.

    ``output`` is TRL's fused-head output (log-probabilities per position) or, on
    medft's path, a causal LM output whose logits cover the supervised positions only
    (``medft.training.supervised_head``), row by row."""
    import torch
    import torch.nn.functional as F

    log_probs = getattr(output, "log_probs", None)
    if log_probs is not None:
        return -log_probs.detach().double(), output.label_mask
    logits = output["logits"] if isinstance(output, dict) else output[0]
    shifted = labels[:, 1:].to(logits.device)
    mask = shifted != IGNORE_INDEX
    nll = torch.zeros(mask.shape, dtype=torch.float64, device=logits.device)
    nll[mask] = F.cross_entropy(logits.detach().float(), shifted[mask], reduction="none").double()
    return nll, mask


def per_sequence(nll, mask, inputs):
    """(NLL sum, supervised tokens) per sequence of the batch, the unit the Trainer gathers.

    A padding-free batch (TRL's flattening collator: one row, sequences told apart by
    ``position_ids`` restarting at 0) is split back into its sequences."""
    import torch

    mask = mask.to(nll.device)
    if not _padding_free(inputs):
        return (nll * mask).sum(dim=1), mask.sum(dim=1)
    starts = inputs["position_ids"].to(nll.device) == 0
    sequence = (starts.cumsum(dim=1) - 1)[:, -nll.shape[1] :]  # the sequence of each predicted token
    count = int(starts.sum())
    sums = torch.zeros(count, dtype=nll.dtype, device=nll.device).index_add_(0, sequence[mask], nll[mask])
    ones = torch.ones_like(sequence[mask])
    tokens = torch.zeros(count, dtype=torch.long, device=nll.device).index_add_(0, sequence[mask], ones)
    return sums, tokens


def _padding_free(inputs) -> bool:
    ids = inputs["input_ids"]
    return ids.shape[0] == 1 and "position_ids" in inputs and inputs.get("attention_mask") is None


@dataclass
class TokenTotals:
    """Running NLL sum and supervised-token count over an evaluation."""

    nll: float = 0.0
    tokens: int = 0
    sequences: int = 0

    def add(self, sums, tokens) -> None:
        self.nll += float(sums.double().sum())
        self.tokens += int(tokens.sum())
        self.sequences += int(tokens.numel())

    def mean(self) -> float | None:
        return self.nll / self.tokens if self.tokens else None
