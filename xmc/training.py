"""The one training loop of the transformer models: the matcher, each level of XR-Transformer, APLC.

A model hands :func:`train_loop` its network, a ``row_losses(model, rows)`` function (the per-row
losses of a batch, whose mean is the batch loss), its optimiser, schedule and batch sampler; the
loop owns what they share: mixed precision (bf16/fp16 autocast, fp16 loss scaling), gradient
accumulation, clipping, the stop on a non-finite loss, checkpoints that a restarted run resumes
from bit-identically (:class:`Checkpoints`), data-parallel training under ``torchrun``
(:func:`start_distributed`, :func:`data_parallel`, :func:`rank_chunks`), the progress bar and the
log lines.

Data-parallel training: each process takes a rank-strided share of every optimiser step's rows and
weighs them so that DDP's average of the ranks' gradients is exactly the single-process gradient of
``mean(row losses) / grad_accum`` summed over the micro-batches: the total batch stays
``batch_size x grad_accum`` whatever the number of devices.
"""
from __future__ import annotations

import functools
import hashlib
import os
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from xmc.io import atomic_path
from xmc.vocabulary import PRECISIONS

__all__ = ["PRECISIONS", "autocast", "resolve_precision", "cpu_has_native_bf16", "int8_linear_layers", "trim_padding",
           "length_sorted_batches", "check_tokens", "EpochBatches", "distributed_context", "start_distributed",
           "data_parallel", "rank_chunks", "data_digest", "LoopSettings", "Checkpoints", "train_loop"]

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
CHECKPOINT_FILE = "checkpoint.pt"


@functools.lru_cache(maxsize=None)  # autocast asks on every batch
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bfloat16 natively (AVX-512 BF16 or AMX): read from the CPU's flags,
    never assumed (our hosts differ; torch's capability string does not say)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast on a CPU with native bf16, else fp32 (GPUs keep the paper's fp32:
    the authors saw AMP instability); other values as given."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """The forward pass's autocast context for ``precision`` (fp32: none; auto: see resolve_precision)."""
    precision = resolve_precision(precision, device)
    return torch.autocast(device.type, dtype=AUTOCAST.get(precision), enabled=precision in AUTOCAST)


def int8_linear_layers(module: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy of ``module`` whose nn.Linear layers run int8 (dynamic quantisation: weights int8,
    activations quantised per batch), for inference passes."""
    import copy
    import warnings

    quantized = copy.deepcopy(module).cpu().eval()
    with warnings.catch_warnings():  # torch.ao.quantization says it moves to torchao; it works in 2.13
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(quantized, {torch.nn.Linear}, dtype=torch.qint8)


def check_tokens(input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated int64 tensors from token arrays (N, T)."""
    input_ids, attention_mask = np.asarray(input_ids), np.asarray(attention_mask)
    if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
        raise ValueError(f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} "
                         "must both be 2-D (N, max_length) of the same shape")
    if not (np.issubdtype(input_ids.dtype, np.integer) and np.issubdtype(attention_mask.dtype, np.integer)):
        raise ValueError(f"input_ids and attention_mask must be integer arrays, got "
                         f"{input_ids.dtype} and {attention_mask.dtype}")
    return (torch.from_numpy(input_ids.astype(np.int64)),
            torch.from_numpy(attention_mask.astype(np.int64)))


def shorten_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's first ``length - 1`` attended tokens and its last attended one (the family's
    closing special token: BERT's [SEP], XLNet's <cls>), right-padded to (N, length); rows already
    that short are kept whole."""
    ids, mask = input_ids.numpy(), attention_mask.numpy().astype(bool)
    out_ids = np.zeros((ids.shape[0], length), dtype=ids.dtype)
    out_mask = np.zeros((ids.shape[0], length), dtype=attention_mask.numpy().dtype)
    pad = int(ids[~mask][0]) if (~mask).any() else 0
    out_ids[:] = pad
    for i in range(ids.shape[0]):
        kept = ids[i][mask[i]]
        if len(kept) > length:
            kept = np.concatenate([kept[:length - 1], kept[-1:]])
        out_ids[i, :len(kept)] = kept
        out_mask[i, :len(kept)] = 1
    return torch.from_numpy(out_ids), torch.from_numpy(out_mask)


def trim_padding(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch without the columns that are padding in every row (right padding: the tail; XLNet's
    left padding: the head), so the encoder does not attend over them; outputs are unchanged."""
    keep = attention_mask.bool().any(0)
    if not keep.any():
        keep[0] = True
    return input_ids[:, keep], attention_mask[:, keep]


def length_sorted_batches(input_ids: torch.Tensor, attention_mask: torch.Tensor, batch_size: int):
    """Prediction batches longest rows first, each cut by :func:`trim_padding`: yields
    ``(rows, ids, mask)`` with ``rows`` the batch's row numbers (numpy) in the input."""
    by_length = torch.argsort(attention_mask.sum(1), descending=True, stable=True)
    for start in range(0, by_length.numel(), batch_size):
        rows = by_length[start:start + batch_size]
        yield (rows.numpy(), *trim_padding(input_ids[rows], attention_mask[rows]))


class EpochBatches:
    """Endless mini-batches of row indices: each epoch a fresh ``torch.randperm(n)`` cut into pieces
    of ``batch_size`` (the last one may be smaller).

    ``state_dict`` holds the generator, the current permutation and the position in it, so a
    restored sampler continues with exactly the batches the interrupted run would have drawn.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.empty(0, dtype=torch.long), 0

    def __next__(self) -> torch.Tensor:
        if self.pos >= len(self.perm):
            self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += len(idx)
        return idx

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.perm, self.pos = state["perm"], state["pos"]


def distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process: from torchrun's environment, else (0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    rank = int(os.environ["RANK"])
    return rank, world, int(os.environ.get("LOCAL_RANK", rank))


def start_distributed(device: torch.device) -> tuple[torch.device, int, int]:
    """Join torchrun's process group when there is one: (this process's device, rank, world).
    On GPUs each process takes the device of its local rank (NCCL); on the CPU, gloo."""
    rank, world, local_rank = distributed_context()
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


def data_parallel(net: torch.nn.Module, device: torch.device, seed: int, rank: int, world: int):
    """``net`` itself in one process, else wrapped in DDP (which copies rank 0's weights to all)."""
    if world == 1:
        return net
    # Parameters a model leaves unused (the encoder's pooler: phi_neural pools the last layer) get
    # no gradient; DDP must know to expect that.
    model = torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    torch.manual_seed(seed + 1_000_003 * rank)  # own dropout masks per rank
    return model


def rank_chunks(micro: list[torch.Tensor], rank: int, world: int, batch_size: int, grad_accum: int):
    """This rank's share of one optimiser step: [(row indices, row weights or None), ...].

    Single process: the micro-batches themselves (weights None: the loss is the batch mean /
    grad_accum). With ``world`` ranks: the step's rows are dealt out rank-strided and each row weighs
    ``world / (len(its micro-batch) * grad_accum)``, so that DDP's average of the ranks' gradients
    is exactly the single-process gradient. A rank left without rows (a tiny last batch of an epoch)
    runs one row with weight 0: every rank must join the gradient all-reduce.
    """
    if world == 1:
        return [(m, None) for m in micro]
    idx = torch.cat(micro)
    weight = torch.cat([torch.full((len(m),), world / (len(m) * grad_accum)) for m in micro])
    mine, w = idx[rank::world], weight[rank::world]
    if len(mine) == 0:
        mine, w = idx[:1], torch.zeros(1)
    return [(mine[s:s + batch_size], w[s:s + batch_size]) for s in range(0, len(mine), batch_size)]


def data_digest(*arrays) -> str:
    """sha256 over the bytes of numpy arrays or CPU tensors: a checkpoint's "same data" check."""
    digest = hashlib.sha256()
    for a in arrays:
        a = a.numpy() if isinstance(a, torch.Tensor) else a
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


@dataclass
class LoopSettings:
    """What the loop needs of a model's params. ``name`` titles the progress bar and the messages
    ("matcher", "aplc", "xr level 64"); ``hint`` says what to change when the loss is not finite;
    ``memory_hint`` adds a way to save memory to the out-of-memory message."""

    name: str
    steps: int
    batch_size: int
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    precision: str = "fp32"
    log_every: int = 10
    hint: str = "lower the learning rate"
    memory_hint: str = ""

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"{self.name} precision must be one of {PRECISIONS}, got {self.precision!r}")

    def out_of_memory(self, step: int, device: torch.device) -> str:
        s = self
        return (f"{s.name} ran out of {device.type} memory at step {step}/{s.steps} with batch_size "
                f"{s.batch_size} per device and grad_accum {s.grad_accum}; halve batch_size to "
                f"{max(s.batch_size // 2, 1)} and double grad_accum to {2 * s.grad_accum} (the same total "
                f"batch of {s.batch_size * s.grad_accum}), or use precision bf16 (now {s.precision})"
                + (f" or {s.memory_hint}" if s.memory_hint else ""))


def _rng_state(device: torch.device) -> tuple:
    return (torch.get_rng_state(),  # dropout on CPU
            torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


class Checkpoints:
    """``checkpoint.pt`` in ``folder``: the whole training state, written atomically every ``every``
    optimiser steps, read back only by a run of the same ``fingerprint`` (params, encoder, data,
    world size). ``what`` names the model in the warnings ("matcher", "aplc", ...); ``warn``
    receives them."""

    def __init__(self, folder, fingerprint: dict, every: int, what: str, warn: Callable[[str], None],
                 rank: int = 0):
        self.folder, self.fingerprint, self.every = Path(folder), fingerprint, every
        self.what, self.warn, self.rank = what, warn, rank
        self.path = self.folder / CHECKPOINT_FILE
        if rank == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            for stale in self.folder.glob(".checkpoint.*.tmp.pt"):  # left by a kill mid-write
                stale.unlink(missing_ok=True)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def read(self) -> dict | None:
        """The checkpoint if it exists, loads, and was written by this same run; else None."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            old = state["fingerprint"]
        except Exception as e:  # noqa: BLE001 - any unreadable file means: start afresh
            self.warn(f"warning: ignoring unreadable {self.what} checkpoint {self.path} "
                      f"({type(e).__name__}: {e}); training from step 0")
            return None
        if old != self.fingerprint:
            changed = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
            self.warn(f"warning: ignoring {self.what} checkpoint {self.path}: it was written by a run with "
                      f"other {', '.join(changed)}; training from step 0")
            return None
        return state

    def write(self, step: int, net, optimizer, scheduler, scaler, batches: EpochBatches, history: list,
              device: torch.device, world: int = 1, phase: int = 0, extra: dict | None = None) -> None:
        """Everything a bit-identical continuation needs, to a temporary file then renamed: a kill
        mid-write leaves the previous checkpoint in place. Under data parallelism every rank calls
        this (to gather the ranks' RNG states) and rank 0 writes. ``phase`` and ``extra`` are the
        caller's (XR-Transformer: the level and the frozen coarser heads)."""
        rng = [_rng_state(device)]
        if world > 1:
            rng = [None] * world
            torch.distributed.all_gather_object(rng, _rng_state(device))
        if self.rank != 0:
            return
        state = {"step": step, "phase": phase, "fingerprint": self.fingerprint, "net": net.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict(), "batches": batches.state_dict(), "history": history,
                 "extra": extra or {}, "rank_rng": [r[0] for r in rng], "rank_cuda_rng": [r[1] for r in rng]}
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)


def restore(state: dict, net, optimizer, scheduler, scaler, batches: EpochBatches, device: torch.device,
            rank: int = 0) -> tuple[int, list]:
    """Load a checkpoint into freshly built training objects; returns (step, history)."""
    net.load_state_dict(state["net"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    batches.load_state_dict(state["batches"])
    torch.set_rng_state(state["rank_rng"][rank])
    cuda_rng = state["rank_cuda_rng"][rank]
    if device.type == "cuda" and cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, device)
    return state["step"], list(state["history"])


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


@contextmanager
def stop_requests(enabled: bool):
    """A list that gains the signal's name when SIGTERM or SIGUSR1 arrives during the block (a
    scheduler's time limit: SLURM sends SIGTERM, or USR1 minutes before with --signal): the loop then
    writes a checkpoint at the end of the step and stops, and the retry resumes from it. Handlers are
    installed only in the main thread and only when there is a checkpoint to write."""
    received: list[str] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signal.Signals(signum).name))
                for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def enable_tf32(device: torch.device) -> None:
    """TF32 matmuls and convolutions on GPUs that have them (Ampere and later): fp32 training and
    inference at tensor-core speed, ~10 bits of mantissa in the products (accumulation in fp32)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def train_loop(net: torch.nn.Module, row_losses: Callable, optimizer, scheduler, batches: EpochBatches,
               s: LoopSettings, *, device: torch.device, model=None, rank: int = 0, world: int = 1,
               checkpoints: Checkpoints | None = None, resume: dict | None = None, phase: int = 0,
               extra: Callable[[], dict] | None = None, step_offset: int = 0, total_steps: int | None = None,
               history: list | None = None, tag: dict | None = None, prefix: str = "",
               log: Callable[[str], None] | None = None) -> list:
    """Train ``net`` for ``s.steps`` optimiser steps; returns the history, one dict per step
    (step, loss, lr, and ``tag``'s entries).

    row_losses(model, rows) -> (len(rows),) float tensor with the per-row losses of the batch of
    training rows ``rows`` (int64 tensor), computed through ``model`` (``net``, or its DDP wrapper)
    under the precision's autocast. With ``checkpoints``, a checkpoint is written every
    ``checkpoints.every`` steps; ``resume`` (a state from :meth:`Checkpoints.read` of this phase)
    continues from it. ``step_offset``/``total_steps`` number the steps of a phase within a longer
    run (XR-Transformer's levels); ``prefix`` starts its log lines ("level 64 ").
    """
    model = net if model is None else model
    history = [] if history is None else history
    total = s.steps if total_steps is None else total_steps
    say = log or (lambda message: None)
    # fp16 needs loss scaling; disabled, the scaler passes everything through unchanged.
    scaler = torch.amp.GradScaler(device.type, enabled=s.precision == "fp16")
    done = 0
    if resume is not None:
        done, history = restore(resume, net, optimizer, scheduler, scaler, batches, device, rank)
        say(f"resuming from {prefix}step {done}/{s.steps} ({checkpoints.path})")
    net.train()
    start, seen = time.perf_counter(), 0
    bar = tqdm(range(done + 1, s.steps + 1), initial=done, total=s.steps, desc=s.name, unit="step",
               mininterval=1.0, disable=rank != 0)

    def settle(step_, loss_, lr_):
        """Read a step's loss back (one step late, so that the host queues the next step while the
        device still works on this one), stop on NaN/inf, record and log it."""
        value = loss_.item()
        if not np.isfinite(value):
            raise FloatingPointError(f"{s.name} loss is {value} at step {step_}/{s.steps}; {s.hint}")
        history.append({"step": step_offset + step_, "loss": value, "lr": lr_, **(tag or {})})
        rate = seen / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{value:.4f}", ex_s=f"{rate:.1f}")
        if step_ % s.log_every == 0 or step_ == s.steps:
            recent = [h["loss"] for h in history[-s.log_every:]]
            say(f"{prefix}step {step_offset + step_}/{total} loss {np.mean(recent):.5f} "
                f"lr {lr_:.3g} examples/s {rate:.1f}")

    enable_tf32(device)
    with stop_requests(checkpoints is not None) as stop:
        pending = None  # (step, loss on the device, lr) of the step not yet read back
        for step in bar:
            micro = [next(batches) for _ in range(s.grad_accum)]
            chunks = rank_chunks(micro, rank, world, s.batch_size, s.grad_accum)
            # Summed on the device and read back one step later (a GPU waits for nothing in between).
            step_loss = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64,
                                    device=device)
            try:
                for j, (rows, weight) in enumerate(chunks):
                    # Under DDP only the last backward of a step all-reduces the gradients.
                    sync = nullcontext() if model is net or j == len(chunks) - 1 else model.no_sync()
                    with sync:
                        with autocast(device, s.precision):
                            losses = row_losses(model, rows).float()
                        if weight is None:
                            loss = losses.mean() / s.grad_accum
                        else:
                            loss = (losses * weight.to(device)).sum()
                        scaler.scale(loss).backward()
                    step_loss += loss.detach().to(step_loss.dtype)
                if world > 1:  # the step's loss over all ranks (each rank's share is scaled by world)
                    torch.distributed.all_reduce(step_loss)
                    step_loss /= world
                if pending is not None:  # the previous step's loss: a NaN there stops training here
                    settle(*pending)
                seen += sum(len(m) for m in micro)
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(net.parameters(), s.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            except torch.OutOfMemoryError as e:
                raise RuntimeError(s.out_of_memory(step, device)) from e
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            pending = (step, step_loss, scheduler.get_last_lr()[0])
            stopping = bool(stop)
            if world > 1 and checkpoints is not None:  # every rank stops at the same step, or none does
                flag = torch.tensor([float(stopping)], device=device)
                torch.distributed.all_reduce(flag)
                stopping = bool(flag.item())
            if checkpoints is not None and (checkpoints.due(step) or stopping):
                settle(*pending)  # a checkpoint only ever holds weights of finite-loss steps
                pending = None
                checkpoints.write(step, net, optimizer, scheduler, scaler, batches, history,
                                  device, world, phase, extra() if extra else None)
            if stopping:
                raise SystemExit(f"{s.name}: stopped by {', '.join(stop) or 'a signal to another rank'} at step "
                                 f"{step}/{s.steps}; checkpoint written to {checkpoints.path}: a rerun resumes there")
        if pending is not None:
            settle(*pending)
    bar.close()
    net.eval()
    return history
