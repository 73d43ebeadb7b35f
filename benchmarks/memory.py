"""Peak memory of a training step: ``medft.training.memory``'s estimate against measurements.

    .venv/bin/python benchmarks/memory.py [--models tiny,small] [--methods lora,full,freeze]
                                          [--shapes 2x256,4x512] [--gc both|on|off] [--no-rss]

Each configuration loads the model the way medft does (``medft.modeling.models.load_model`` on CPU,
then ``medft.modeling.methods.apply_method``), turns on gradient checkpointing as the trainer does
(``use_reentrant=False``), adds TRL's fused LM head exactly as ``SFTTrainer`` does, and runs
real training steps: forward with ``fused_lm_head=True`` (SFTTrainer's ``compute_loss``),
backward, gradient clipping, AdamW (``train.optim=adamw_torch``), ``zero_grad``. Batches are
random token ids with one row padded by 1/8 (so an attention mask exists, as in medft's
padded or packed batches); every real token is supervised. The optimizer state is created
first (a step on zero gradients), then one step is measured.

Three measures, all on this CPU machine where ``torch.cuda.max_memory_allocated`` does not exist:

- ``tensors``: the sum the planner models. Parameters, gradients and AdamW state by summing
  their tensors (distinct storages); activations as the bytes saved for backward, captured
  with ``torch.autograd.graph.saved_tensors_hooks`` during the forward (distinct storages,
  parameters excluded); with checkpointing plus one block's saved bytes (measured by a forward
  without checkpointing, hooks around the last block), since backward recomputes one block at
  a time; the loss head's transient peak measured by running TRL's chunked head forward and
  backward alone under the live-tensor tracker below.
- ``live``: the peak of live tensor bytes over the whole measured step, tracked op by op
  with a ``TorchDispatchMode`` (every op's output storages, released when their storage is
  garbage collected) on top of the weights and optimizer state: what the CUDA caching
  allocator's ``max_memory_allocated`` counts, without kernel workspaces.
- ``rss``: a fresh child process (``MALLOC_MMAP_THRESHOLD_=65536`` so freed large blocks go
  back to the OS) runs a warm-up step, frees, and samples its resident set every 2 ms with a
  psutil thread during the next step; the weights and optimizer state (summed tensors) plus
  the peak growth. It includes what tensors do not (allocator caching, oneDNN scratch,
  autograd bookkeeping).

The estimate is ``Estimate.peak_allocated`` with ``device="cpu"`` (float32 weights and compute,
dropout masks as float noise tensors, TRL's torch fold of the logits tiles) and no overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _common import compose, offline_environment, release_memory  # noqa: E402  (benchmarks/ is on sys.path when run or tested)

MIB = 1 << 20


# ----------------------------------------------------------------------------- setup
def load_for_training(cfg, gradient_checkpointing: bool):
    """The model as medft trains it on this CPU: loaded, method applied, TRL's fused head added."""
    from medft.modeling.methods import apply_method
    from medft.modeling.models import load_model, resolve_source

    model = load_model(cfg.model, cfg.method, "cpu", resolve_source(cfg.model))
    model = apply_method(model, cfg.model, cfg.method, gradient_checkpointing=gradient_checkpointing)
    return prepare_trainable(model, gradient_checkpointing)


def prepare_trainable(model, gradient_checkpointing: bool):
    """What SFTTrainer does to the model before the first step (checkpointing, fused LM head)."""
    from trl.trainer.utils import add_fused_lm_head

    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "_medft_fused_head", False):
        add_fused_lm_head(base, outputs=("log_probs", "entropy", "is_top1"))
        base._medft_fused_head = True
    model.train()
    return model


def make_batch(vocab: int, batch: int, seq: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(10, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, seq - max(1, seq // 8) :] = 0  # padding: an attention mask reaches SDPA
    labels = input_ids.masked_fill(mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def trainable_parameters(model):
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(model):
    import torch

    return torch.optim.AdamW(trainable_parameters(model), lr=1e-4, weight_decay=0.0)


def init_optimizer_state(model, optimizer) -> None:
    """Allocate AdamW's moments as the first step does, without a forward and backward: a step
    on zero gradients (with weight decay 0 the parameters do not move)."""
    import torch

    for p in trainable_parameters(model):
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train_step(model, optimizer, batch) -> float:
    import torch

    out = model(**batch, fused_lm_head=True, use_cache=False)
    loss = out.loss
    del out
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable_parameters(model), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


# ----------------------------------------------------------------------------- tensor accounting
def storage_bytes(tensors) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if t is None:
            continue
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def optimizer_state_tensors(optimizer):
    import torch

    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def baseline_storages(model, optimizer, batch) -> set[int]:
    tensors = [*model.parameters(), *model.buffers(), *optimizer_state_tensors(optimizer), *batch.values()]
    return {t.untyped_storage().data_ptr() for t in tensors}


class LiveBytes:
    """Peak bytes of tensor storages created while active (a TorchDispatchMode).

    Every op's output storages are counted once when first seen and released when the
    storage object is collected, which is when the CUDA caching allocator would get the
    block back. Storages that existed before (``ignore``) are not counted.
    """

    def __init__(self, ignore: set[int] | None = None):
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self
        self.ignore = set(ignore or ())
        self.live: dict[int, int] = {}
        self._refs: dict[int, object] = {}
        self.current = 0
        self.peak = 0

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker._track(out)
                return out

        self._mode = _Mode()

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)
        self._refs.pop(key, None)

    def _track(self, out) -> None:
        import torch
        from torch.utils._pytree import tree_flatten

        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            st = t.untyped_storage()
            key = st.data_ptr()
            if not key or key in self.live or key in self.ignore:
                continue
            n = st.nbytes()
            self.live[key] = n
            self._refs[key] = weakref.ref(st, lambda _ref, k=key: self._release(k))
            self.current += n
            self.peak = max(self.peak, self.current)

    def __enter__(self):
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)


class SavedBytes:
    """Bytes autograd saves for backward while active (distinct storages, parameters excluded)."""

    def __init__(self, exclude: set[int]):
        import torch

        self.exclude = exclude
        self.seen: dict[int, int] = {}
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t):
        st = t.untyped_storage()
        key = st.data_ptr()
        if key not in self.exclude and key not in self.seen:
            self.seen[key] = st.nbytes()
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())

    def __enter__(self):
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def decoder_layers(model):
    from medft.modeling.methods import find_decoder_layers

    return find_decoder_layers(model)[1]


def block_saved_bytes(model, batch, params: set[int]) -> int:
    """Saved bytes of the last decoder block in a forward without checkpointing."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    checkpointing = getattr(base, "is_gradient_checkpointing", False)
    if checkpointing:
        base.gradient_checkpointing_disable()
    layer = decoder_layers(base)[-1]
    saver = SavedBytes(params)
    state = {}

    def pre(_module, _args):
        state["before"] = saver.total

    def post(_module, _args, _out):
        state["after"] = saver.total

    handles = [layer.register_forward_pre_hook(pre), layer.register_forward_hook(post)]
    try:
        with torch.enable_grad(), saver:
            out = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False, logits_to_keep=1
            )
        del out
    finally:
        for h in handles:
            h.remove()
        if checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return state["after"] - state["before"]


def loss_head_peak(model, batch) -> int:
    """Transient peak of TRL's chunked LM head, forward and backward, on detached hidden states."""
    import torch
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    b, s = batch["input_ids"].shape
    hidden = torch.randn(b * (s - 1), head.weight.shape[1], dtype=head.weight.dtype).requires_grad_()
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    targets = labels.clamp(min=0).reshape(-1)
    had_grad = head.weight.grad
    tracker = LiveBytes(ignore={hidden.untyped_storage().data_ptr(), targets.untyped_storage().data_ptr()})
    with tracker:
        per_token = ChunkedLogProbFunction.apply(
            hidden,
            head.weight,
            None,
            targets,
            1.0,
            _CHUNKED_LOGPROB_CHUNK_SIZE,
            None,
            1.0,
            ("log_probs", "entropy", "is_top1"),
        )
        log_probs = per_token[0].view(mask.shape).masked_fill(~mask, 0)
        loss = -log_probs.sum() / mask.sum().clamp(min=1)
        del per_token, log_probs
        loss.backward()
        del loss
        hidden.grad = None
    head.weight.grad = had_grad
    return tracker.peak


@dataclass
class TensorMeasure:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    block: int
    logits: int
    live_peak: int
    gradient_checkpointing: bool

    @property
    def tensors_peak(self) -> int:
        acts = self.activations + (self.block if self.gradient_checkpointing else 0)
        return self.weights + self.gradients + self.optimizer + acts + self.logits


def measure_tensors(model, batch, gradient_checkpointing: bool) -> TensorMeasure:
    """One measured step after the optimizer state exists (see the module docstring)."""
    import torch

    optimizer = make_optimizer(model)
    init_optimizer_state(model, optimizer)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    weights = storage_bytes(model.parameters())
    static = weights + storage_bytes(optimizer_state_tensors(optimizer)) + storage_bytes(model.buffers())
    live = LiveBytes(ignore=baseline_storages(model, optimizer, batch))
    saver = SavedBytes(params)
    with live:
        with saver:
            out = model(**batch, fused_lm_head=True, use_cache=False)
        loss = out.loss
        del out
        loss.backward()
        del loss
        grads = storage_bytes(p.grad for p in trainable_parameters(model))
        torch.nn.utils.clip_grad_norm_(trainable_parameters(model), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    state = storage_bytes(optimizer_state_tensors(optimizer))
    block = block_saved_bytes(model, batch, params)
    logits = loss_head_peak(model, batch)
    return TensorMeasure(
        weights=weights,
        gradients=grads,
        optimizer=state,
        activations=saver.total,
        block=block,
        logits=logits,
        live_peak=static + live.peak,
        gradient_checkpointing=gradient_checkpointing,
    )


# ----------------------------------------------------------------------------- RSS (child process)
def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def child_rss(spec: dict) -> dict:
    """Run in a fresh process: warm-up step, free, then peak RSS growth during one step."""
    import torch

    torch.manual_seed(0)
    cfg = compose(spec["overrides"])
    model = load_for_training(cfg, spec["gc"])
    batch = make_batch(model.config.vocab_size, spec["batch"], spec["seq"])
    optimizer = make_optimizer(model)
    train_step(model, optimizer, batch)
    release_memory()
    static = storage_bytes(model.parameters()) + storage_bytes(optimizer_state_tensors(optimizer))
    start = peak = _rss()
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss())
            stop.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    train_step(model, optimizer, batch)
    stop.set()
    thread.join()
    peak = max(peak, _rss())
    return {"static": static, "growth": peak - start, "rss_peak": static + peak - start}


def run_child(overrides: list[str], gc: bool, batch: int, seq: int, timeout: float = 900) -> dict | None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    spec = json.dumps({"overrides": overrides, "gc": gc, "batch": batch, "seq": seq})
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", spec],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.stderr.write(proc.stderr[-2000:])
    return None


# ----------------------------------------------------------------------------- estimate
def planner_estimate(cfg, batch: int, seq: int, gc: bool):
    from medft.training.memory import estimate_for_config, shape_from_source

    shape = shape_from_source(cfg.model)
    return estimate_for_config(
        cfg,
        shape,
        device="cpu",
        batch_size=batch,
        seq_len=seq,
        gradient_checkpointing=gc,
        weight_dtype_bytes=4,
        compute_dtype_bytes=4,
        loss="chunked",  # the measured step runs TRL's fused head
    )


@dataclass
class Row:
    model: str
    method: str
    gc: bool
    batch: int
    seq: int
    estimate: int
    est_activations: int
    est_logits: int
    tensors: int
    activations: int
    logits: int
    live: int
    rss: int | None
    seconds: float


def measure_config(model_name: str, method: str, gc: bool, batch: int, seq: int, rss: bool) -> Row:
    import torch

    torch.manual_seed(0)
    overrides = [f"model={model_name}", f"method={method}"]
    cfg = compose(overrides)
    started = time.perf_counter()
    model = load_for_training(cfg, gc)
    data = make_batch(model.config.vocab_size, batch, seq)
    measured = measure_tensors(model, data, gc)
    del model
    release_memory()
    rss_result = run_child(overrides, gc, batch, seq) if rss else None
    est = planner_estimate(cfg, batch, seq, gc)
    return Row(
        model=model_name,
        method=method,
        gc=gc,
        batch=batch,
        seq=seq,
        estimate=est.peak_allocated,
        est_activations=est.activations + est.recompute,
        est_logits=est.logits,
        tensors=measured.tensors_peak,
        activations=measured.activations + (measured.block if gc else 0),
        logits=measured.logits,
        live=measured.live_peak,
        rss=None if rss_result is None else rss_result["rss_peak"],
        seconds=time.perf_counter() - started,
    )


def print_table(rows: list[Row]) -> None:
    def mib(x):
        return "-" if x is None else f"{x / MIB:.1f}"

    def ratio(est, meas):
        return "-" if not meas else f"{est / meas:.2f}"

    header = (
        f"{'model':<6} {'method':<7} {'gc':<3} {'b x s':<8} {'est MiB':>8} {'tensors':>8} {'e/t':>5} "
        f"{'live':>8} {'e/l':>5} {'rss':>8} {'e/r':>5}  {'act est/meas MiB':>17} {'logits est/meas':>16}"
    )
    print(header)
    for r in rows:
        print(
            f"{r.model:<6} {r.method:<7} {'on' if r.gc else 'off':<3} {f'{r.batch}x{r.seq}':<8} "
            f"{mib(r.estimate):>8} {mib(r.tensors):>8} {ratio(r.estimate, r.tensors):>5} "
            f"{mib(r.live):>8} {ratio(r.estimate, r.live):>5} {mib(r.rss):>8} {ratio(r.estimate, r.rss):>5}  "
            f"{mib(r.est_activations) + '/' + mib(r.activations):>17} {mib(r.est_logits) + '/' + mib(r.logits):>16}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,small")
    parser.add_argument("--methods", default="lora,full,freeze")
    parser.add_argument("--shapes", default="2x256,4x512", help="batch x sequence length, comma-separated")
    parser.add_argument("--gc", choices=("both", "on", "off"), default="both")
    parser.add_argument("--no-rss", action="store_true", help="skip the child-process RSS measure")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    offline_environment()
    import warnings

    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    if args.child:
        print(json.dumps(child_rss(json.loads(args.child))), flush=True)
        return
    import torch

    from medft.modeling.models import resolve_source

    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    gcs = {"both": (False, True), "on": (True,), "off": (False,)}[args.gc]
    for name in args.models.split(","):
        resolve_source(compose([f"model={name}"]).model)  # build the random checkpoint once, outside timing
    print(
        f"# {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        "float32 weights and compute"
    )
    rows = []
    for name in args.models.split(","):
        for method in args.methods.split(","):
            for gc in gcs:
                for batch, seq in shapes:
                    row = measure_config(name, method, gc, batch, seq, rss=not args.no_rss)
                    rows.append(row)
                    print(
                        f"  measured {name} {method} gc={'on' if gc else 'off'} {batch}x{seq} in {row.seconds:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
