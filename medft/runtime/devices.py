"""Facts about the machine this process runs on, read once and handed on as plain values.

``DeviceFacts`` is what :func:`medft.config.resolve.resolve` decides every "auto" switch from;
``device_facts()`` reads it from this machine, and a hand-made one pictures any other
(a CUDA GPU on a CPU-only machine, a GPU without bf16), so the decisions test without one.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from medft.runtime.distributed import world_size


@dataclass(frozen=True)
class DeviceFacts:
    """What the "auto" settings depend on, as plain values.

    ``pictured`` marks a device the memory planner pictures rather than one the run is on:
    settings the config forces are then taken as given instead of refused.
    """

    kind: str = "cpu"  # "cuda" when torch sees a GPU, else "cpu"
    cuda_bf16: bool = False  # the GPU computes in bfloat16
    capability: tuple[int, int] | None = None  # CUDA compute capability (8, 0) = Ampere
    flash_attn: bool = False  # flash-attn is installed
    liger: bool = False  # liger-kernel is installed
    world_size: int = 1  # processes in this job (torchrun's WORLD_SIZE)
    gpu_count: int = 0  # GPUs this process sees
    free_memory: int | None = None  # free GPU memory in bytes, where known
    pictured: bool = False

    @property
    def cuda(self) -> bool:
        return self.kind == "cuda"


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def device_kind() -> str:
    """ "cuda" when torch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_facts(free_memory: bool = True) -> DeviceFacts:
    """This machine's facts; ``free_memory`` also asks the GPU how much memory it has free."""
    import torch

    installed = {"flash_attn": flash_attn_available(), "liger": liger_available(), "world_size": world_size()}
    if not torch.cuda.is_available():
        return DeviceFacts(kind="cpu", **installed)
    return DeviceFacts(
        kind="cuda",
        cuda_bf16=bool(torch.cuda.is_bf16_supported()),
        capability=tuple(torch.cuda.get_device_capability()),
        gpu_count=torch.cuda.device_count(),
        free_memory=int(torch.cuda.mem_get_info()[0]) if free_memory else None,
        **installed,
    )


def pictured_facts(kind: str = "cuda") -> DeviceFacts:
    """A device of ``kind`` as the memory planner pictures it when it plans for a machine it may not
    be on: this machine's GPU where it has one, else a current (bf16, Ampere) GPU; the kernels
    installed here."""
    installed = {"flash_attn": flash_attn_available(), "liger": liger_available(), "pictured": True}
    if kind != "cuda":
        return DeviceFacts(kind=kind, **installed)
    import torch

    if torch.cuda.is_available():
        real = device_facts(free_memory=False)
        return DeviceFacts(kind="cuda", cuda_bf16=real.cuda_bf16, capability=real.capability, **installed)
    return DeviceFacts(kind="cuda", cuda_bf16=True, capability=(8, 0), **installed)
