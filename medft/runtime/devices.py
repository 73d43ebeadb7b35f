"""Facts about the machine this process runs on."""

from __future__ import annotations


def device_kind() -> str:
    """ "cuda" when torch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
