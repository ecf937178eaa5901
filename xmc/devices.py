"""GPU assignment for concurrent jobs on one machine: a lock-file slot allocator.

Snakemake's ``gpu`` resource only counts GPUs; it never says *which* device a job gets, so two
jobs started together would both use device 0. :func:`assign_gpus` gives a job ``n`` devices that no
other job holds: one lock file per device in a shared folder (``results/.gpu-slots``, or
``$XMC_GPU_LOCK_DIR``), taken with ``fcntl.flock``. The kernel drops a flock when its file is closed,
so a device comes free when the job ends, fails or is killed (even by SIGKILL); nothing is left to
clean up. While fewer than ``n`` devices are free the job waits (it logs once that it does).

The pool of devices is ``$XMC_GPU_DEVICES`` if set, else ``$CUDA_VISIBLE_DEVICES`` if set (a user's
restriction of the machine), else every GPU ``nvidia-smi -L`` lists. Under a cluster scheduler
(``$SLURM_JOB_ID`` set) the job's devices are the scheduler's and nothing is changed. Without GPUs
(a CPU machine) the allocator does nothing.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

LOCK_DIR_ENV, DEVICES_ENV = "XMC_GPU_LOCK_DIR", "XMC_GPU_DEVICES"
DEFAULT_LOCK_DIR = "results/.gpu-slots"
# Variables a cluster scheduler sets inside a job whose devices it has already chosen.
SCHEDULER_ENV = ("SLURM_JOB_ID",)

__all__ = ["assign_gpus", "visible_gpus", "under_scheduler", "LOCK_DIR_ENV", "DEVICES_ENV"]


def under_scheduler(environ=None) -> bool:
    """True inside a job of a cluster scheduler, whose device assignment must be kept."""
    environ = os.environ if environ is None else environ
    return any(environ.get(name) for name in SCHEDULER_ENV)


def _split(value: str) -> list[str]:
    return [d.strip() for d in value.split(",") if d.strip()]


def visible_gpus(environ=None) -> list[str]:
    """Device ids (strings, as CUDA_VISIBLE_DEVICES takes them) this machine may hand out.

    Counted with ``nvidia-smi`` rather than torch: initialising CUDA here would fix this process's
    devices before CUDA_VISIBLE_DEVICES is set.
    """
    environ = os.environ if environ is None else environ
    for name in (DEVICES_ENV, "CUDA_VISIBLE_DEVICES"):
        if name in environ:
            return [d for d in _split(environ[name]) if d != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def _lock_name(device: str) -> str:
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", device) + ".lock"


def _try_take(folder: Path, devices: list[str], n: int) -> list[tuple[str, int]]:
    """Lock up to ``n`` free devices of ``devices`` without waiting; returns (device, fd) pairs."""
    taken = []
    for device in devices:
        fd = os.open(folder / _lock_name(device), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)  # who holds it, for a person looking at the folder
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        taken.append((device, fd))
        if len(taken) == n:
            break
    return taken


@contextlib.contextmanager
def assign_gpus(n: int, lock_dir=None, log: Callable[[str], None] | None = None,
                poll_s: float = 2.0, timeout_s: float | None = None, environ=None) -> Iterator[list[str]]:
    """Hold ``n`` devices no other job holds, with CUDA_VISIBLE_DEVICES set to them, for the block.

    Yields the device ids (list of str; empty on a machine without GPUs or when ``n`` is 0). Under a
    cluster scheduler yields the scheduler's devices and changes nothing. ``environ`` (default
    ``os.environ``) is where CUDA_VISIBLE_DEVICES is set, and restored on exit.

    Either all ``n`` devices are taken or none: a job that finds fewer free releases what it took and
    retries every ``poll_s`` seconds, so two jobs waiting for devices cannot block each other for
    ever. ``timeout_s`` (default: wait as long as it takes) raises TimeoutError.
    """
    environ = os.environ if environ is None else environ
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"assign_gpus: n must be a non-negative integer (GPUs per job), got {n!r}")
    say = log or (lambda message: None)
    if under_scheduler(environ):
        devices = _split(environ.get("CUDA_VISIBLE_DEVICES", ""))
        say(f"GPUs assigned by the cluster scheduler: {','.join(devices) or 'none'}")
        yield devices
        return
    pool = visible_gpus(environ)
    if n == 0 or not pool:
        yield []
        return
    if n > len(pool):
        raise ValueError(f"a job asks for {n} GPUs but this machine has {len(pool)} "
                         f"({','.join(pool)}); lower resources.matcher_gpus in the config")
    folder = Path(lock_dir or environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    start, waiting = time.monotonic(), False
    # Start at a random device so that jobs started together do not all try device 0 first.
    offset = random.randrange(len(pool))
    order = pool[offset:] + pool[:offset]
    while True:
        taken = _try_take(folder, order, n)
        if len(taken) == n:
            break
        for _, fd in taken:
            os.close(fd)  # all or none: never hold part of a set while waiting
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no {n} free GPUs of {','.join(pool)} within {timeout_s:g} s "
                               f"(locks in {folder})")
        if not waiting:
            say(f"waiting for {n} free GPU(s) of {','.join(pool)} (locks in {folder})")
            waiting = True
        time.sleep(poll_s * (0.5 + random.random()))
    devices = [d for d, _ in taken]
    previous = environ.get("CUDA_VISIBLE_DEVICES")
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    waited = time.monotonic() - start
    say(f"GPU(s) {','.join(devices)} assigned" + (f" after waiting {waited:.0f} s" if waiting else ""))
    try:
        yield devices
    finally:
        if previous is None:
            environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            environ["CUDA_VISIBLE_DEVICES"] = previous
        for _, fd in taken:
            os.close(fd)
