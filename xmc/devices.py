"""GPU assignment for concurrent jobs: a lock-file slot allocator, and threads per GPU job.

Snakemake's ``gpu`` resource only counts GPUs; it never says *which* device a job gets, so two
jobs started together would both use device 0. :func:`assign_gpus` gives a job ``n`` devices that no
other job holds: one lock file per device in a folder every job on the host sees
(``/dev/shm/xmc-gpu-slots``, or ``$XMC_GPU_LOCK_DIR``), taken with ``fcntl.flock``. The kernel drops a
flock when its file is closed, so a device comes free when the job ends, fails or is killed (even by
SIGKILL; a launcher passes the locks to its children, which hold them until they are gone); nothing is
left to clean up. While fewer than ``n`` devices are free the job waits (it logs once that it does).

The default folder is node-local (``/dev/shm``, else the temporary folder) and the same for every run
on the host, so two workflow runs on one machine share out its devices too. Where ``flock`` is not
supported (``$XMC_GPU_LOCK_DIR`` on Lustre mounted without ``flock``, NFS without lockd: ENOLCK or
ENOSYS) the job says so and falls back to the node-local default. A job the SLURM executor plugin
submitted (one sbatch per job: SLURM gave it exactly its devices) takes them without any lock
(``$XMC_GPU_LOCKS=0``, set by the workflow inside such a job).

The pool of devices is ``$XMC_GPU_DEVICES`` if set, else ``$CUDA_VISIBLE_DEVICES`` if set (a user's
restriction of the machine, or the devices SLURM gave the job), else every GPU ``nvidia-smi -L``
lists. Locks live in a sub-folder per host and, under SLURM, per allocation (``$SLURM_JOB_ID``):
inside one allocation (``salloc`` or an ``sbatch`` script running the whole workflow) concurrent jobs
share out its devices as on a workstation; under the executor plugin (one sbatch per job) each job
has an allocation of its own and takes the devices SLURM gave it. A request that cannot be met (no
GPU visible, or fewer than asked) is logged as a warning (no GPU: once per workflow run and host) and
the job runs on what there is; ``n = 0`` hides every device, so the job runs on the CPU.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

LOCK_DIR_ENV, DEVICES_ENV = "XMC_GPU_LOCK_DIR", "XMC_GPU_DEVICES"
# Variables a cluster scheduler sets inside a job (the allocation's id).
SCHEDULER_ENV = ("SLURM_JOB_ID",)
# flock errors of file systems that do not lock (Lustre without -o flock, NFS without lockd).
NO_LOCKING = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)
RUN_ENV = "XMC_RUN_ID"  # one workflow run (rules/common.smk sets it): say a warning once per run
LOCKS_ENV = "XMC_GPU_LOCKS"  # 0: take devices without locks (the scheduler placed the job)

__all__ = ["assign_gpus", "visible_gpus", "under_scheduler", "slot_folder", "default_lock_dir", "held_lock_fds",
           "threads_per_gpu_job", "threads_over_cores", "LOCK_DIR_ENV", "DEVICES_ENV"]


def under_scheduler(environ=None) -> str | None:
    """The allocation id inside a job of a cluster scheduler, else None."""
    environ = os.environ if environ is None else environ
    return next((environ[name] for name in SCHEDULER_ENV if environ.get(name)), None)


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


def _safe_name(text: str) -> str:
    """``text`` usable as a file name (lock files and their folders)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def default_lock_dir() -> Path:
    """The node-local folder every run on this host shares: ``/dev/shm`` (a tmpfs, which always
    supports flock), else the system's temporary folder. Never relative to the run: two runs from two
    working directories must see each other's locks."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else Path(tempfile.gettempdir())
    return base / "xmc-gpu-slots"


def slot_folder(lock_dir=None, environ=None) -> Path:
    """Where this job's device locks live: one sub-folder per host (device ids are per machine, and
    ``$XMC_GPU_LOCK_DIR`` may be on a shared file system) and, under SLURM, per allocation."""
    environ = os.environ if environ is None else environ
    base = Path(lock_dir or environ.get(LOCK_DIR_ENV) or default_lock_dir())
    name = _safe_name(socket.gethostname() or "localhost")
    allocation = under_scheduler(environ)
    if allocation:
        name += "-slurm-" + _safe_name(allocation)
    return base / name


def _is_int_at_least(value, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def threads_per_gpu_job(cores: int, gpus_total: int | None, gpus_job: int,
                        threads_per_gpu: int | None = None) -> int:
    """CPU threads of a job that holds ``gpus_job`` of the ``gpus_total`` GPUs (``--resources gpu=G``).

    Snakemake runs a job only when its threads fit in ``--cores`` too, so a GPU job that asked for
    every core would run alone however many GPUs are free. Each job gets its share instead:
    ``threads_per_gpu`` per device it holds if set, else ``cores * gpus_job // gpus_total``, so that
    G single-GPU jobs fit at once; at least 1, at most ``cores``. Without a GPU limit (no
    ``--resources gpu``: a CPU run) or for a job that holds no GPU, the whole machine.
    """
    if not _is_int_at_least(cores, 1):
        raise ValueError(f"threads_per_gpu_job: cores must be an integer >= 1, got {cores!r}")
    if not _is_int_at_least(gpus_job, 0):
        raise ValueError(f"threads_per_gpu_job: gpus_job must be an integer >= 0, got {gpus_job!r}")
    if threads_per_gpu is not None:
        if not _is_int_at_least(threads_per_gpu, 1):
            raise ValueError(f"resources.threads_per_gpu must be a positive integer, got {threads_per_gpu!r}")
        return max(1, min(cores, threads_per_gpu * max(gpus_job, 1)))
    if not gpus_total or gpus_job == 0:
        return cores
    return max(1, min(cores, cores * gpus_job // gpus_total))


def threads_over_cores(set_threads: dict, cores: int) -> dict:
    """The rules whose ``set-threads`` exceed ``--cores``: Snakemake cuts them to ``cores`` without a
    word, and under SLURM the job then asks for fewer CPUs than its profile says (values may be
    Snakemake ``Resource`` objects, with ``.value``)."""
    threads = {rule: getattr(n, "value", n) for rule, n in set_threads.items()}
    return {rule: n for rule, n in threads.items() if isinstance(n, int) and n > cores}


def _lock_name(device: str) -> str:
    return "gpu-" + _safe_name(device) + ".lock"


def _open_lock(path: Path) -> int:
    """The lock file, created readable and writable by every user (runs of several users on one host
    share the folder); a file another user made opens read-only, which flock takes as well."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)
    return fd


def _try_take(folder: Path, devices: list[str], n: int) -> list[tuple[str, int]]:
    """Lock up to ``n`` free devices of ``devices`` without waiting; returns (device, fd) pairs.
    An OSError of flock other than "held by another job" releases what was taken and propagates."""
    taken = []
    try:
        for device in devices:
            fd = _open_lock(folder / _lock_name(device))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except OSError:
                os.close(fd)
                raise
            with contextlib.suppress(OSError):  # who holds it, for a person looking at the folder
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            taken.append((device, fd))
            if len(taken) == n:
                break
    except OSError:
        for _, fd in taken:
            os.close(fd)
        raise
    return taken


def _locks_here(folder: Path) -> None:
    """Raise the OSError of a folder where flock does not work (made if missing, open to all users)."""
    folder.mkdir(parents=True, exist_ok=True)
    for level in (folder.parent, folder):  # like /tmp: everyone may add files, no one removes others'
        with contextlib.suppress(OSError):
            if level.stat().st_uid == os.getuid():
                level.chmod(0o1777)
    fd = _open_lock(folder / "probe.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        pass  # another job is probing: locking works
    finally:
        os.close(fd)


def _lock_folder(lock_dir, environ, warn) -> Path:
    """The slot folder, or the node-local default where the chosen one cannot lock (said once in
    the job's log). A folder where nothing can lock is one clear error, not a traceback per job."""
    folder = slot_folder(lock_dir, environ)
    try:
        _locks_here(folder)
        return folder
    except OSError as e:
        if e.errno not in NO_LOCKING:
            raise
        first = e
    fallback = slot_folder(default_lock_dir(), environ)
    if fallback != folder:
        try:
            _locks_here(fallback)
        except OSError as e:
            if e.errno not in NO_LOCKING:
                raise
        else:
            warn(f"GPU slots: flock is not supported in {folder} ({first}); using the node-local "
                 f"{fallback} instead (set ${LOCK_DIR_ENV} to a node-local folder such as /dev/shm or $TMPDIR)")
            return fallback
    raise RuntimeError(f"GPU slots: flock is not supported in {folder} ({first}), so jobs on this host cannot "
                       f"share out its GPUs; set ${LOCK_DIR_ENV} to a node-local folder (/dev/shm, $TMPDIR)")


def under_executor_plugin(environ=None) -> bool:
    """True inside a job that a cluster executor submitted as an allocation of its own
    (snakemake-executor-plugin-slurm: one sbatch per job), which the workflow marks with
    ``$XMC_GPU_LOCKS=0`` when it re-reads itself inside the job (rules/common.smk): SLURM allocated
    exactly the job's devices, so there is nothing to share out and no lock to take. Not inside
    ``salloc`` or an sbatch script running the whole workflow, whose jobs share the allocation's devices."""
    environ = os.environ if environ is None else environ
    return environ.get(LOCKS_ENV) == "0"


_HELD: dict[str, int] = {}


def held_lock_fds() -> list[int]:
    """File descriptors of the device locks this process holds: a launcher passes them to its child
    (``pass_fds``) so that the devices stay taken until the child is gone too."""
    return list(_HELD.values())


def _loggers(log) -> tuple[Callable[[str], None], Callable[[str], None]]:
    """(info, warning) of a logging.Logger, or the same callable twice."""
    if log is None:
        return (lambda message: None,) * 2
    if hasattr(log, "warning") and hasattr(log, "info"):
        return log.info, log.warning
    return log, log


@contextlib.contextmanager
def assign_gpus(n: int, lock_dir=None, log=None, poll_s: float = 2.0, timeout_s: float | None = None,
                environ=None, rule: str = "this job") -> Iterator[list[str]]:
    """Hold ``n`` devices no other job holds, with CUDA_VISIBLE_DEVICES set to them, for the block.

    Yields the device ids (list of str; empty on a machine without GPUs or when ``n`` is 0).
    ``environ`` (default ``os.environ``) is where CUDA_VISIBLE_DEVICES is set, and restored on exit.
    ``log`` is a logging.Logger or a callable taking a message; ``rule`` names the job in warnings.

    Either all devices are taken or none: a job that finds fewer free releases what it took and
    retries every ``poll_s`` seconds, so two jobs waiting for devices cannot block each other for
    ever. ``timeout_s`` (default: wait as long as it takes) raises TimeoutError. A request for more
    devices than are visible is cut to what is visible, with a warning (none visible: the CPU).
    """
    environ = os.environ if environ is None else environ
    if not _is_int_at_least(n, 0):
        raise ValueError(f"assign_gpus: n must be a non-negative integer (GPUs per job), got {n!r}")
    info, warn = _loggers(log)
    if n == 0:  # resources.matcher_gpus: 0: the CPU, with every device hidden (device "auto" then picks cpu)
        with _hidden(environ):
            yield []
        return
    pool = visible_gpus(environ)
    allocation = under_scheduler(environ)
    where = f"in SLURM allocation {allocation}" if allocation else "on this machine"
    if not pool:
        why = next((f"{name}={environ[name]!r}" for name in (DEVICES_ENV, "CUDA_VISIBLE_DEVICES") if name in environ),
                   "no CUDA_VISIBLE_DEVICES, and nvidia-smi lists no device")
        say = warn if _first_time(environ, "no-gpu", allocation) else info  # once per run and host
        say(f"{rule} asked for {n} GPU(s) but none is visible {where} ({why}): it runs on the CPU "
            f"(config resources.matcher_gpus: 0 asks for none)")
        with _hidden(environ):
            yield []
        return
    if n > len(pool):
        warn(f"{rule} asked for {n} GPU(s) but only {len(pool)} ({','.join(pool)}) are visible {where}: "
             f"it runs on {len(pool)}")
        n = len(pool)
    if n > 1 and any(d.startswith("MIG-") for d in pool):
        # CUDA shows a process at most one MIG slice, so torchrun's ranks cannot each take one.
        warn(f"{rule} asked for {n} GPU(s) but the visible devices are MIG slices ({','.join(pool)}), of which "
             f"CUDA gives a process only one: it runs on 1 (data-parallel training needs whole GPUs)")
        n = 1
    if under_executor_plugin(environ):  # SLURM gave this job its own devices: nothing to share out
        devices = pool[:n]
        previous = environ.get("CUDA_VISIBLE_DEVICES")
        environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        info(f"{rule}: GPU(s) {','.join(devices)} assigned ({where}, its own: no lock)")
        try:
            yield devices
        finally:
            _restore(environ, previous)
        return
    folder = _lock_folder(lock_dir, environ, warn)
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
            info(f"waiting for {n} free GPU(s) of {','.join(pool)} (locks in {folder})")
            waiting = True
        time.sleep(poll_s * (0.5 + random.random()))
    devices = [d for d, _ in taken]
    previous = environ.get("CUDA_VISIBLE_DEVICES")
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    waited = time.monotonic() - start
    info(f"{rule}: GPU(s) {','.join(devices)} assigned" + (f" after waiting {waited:.0f} s" if waiting else "")
         + f" ({where})")
    _HELD.update(taken)
    try:
        yield devices
    finally:
        _restore(environ, previous)
        for device, fd in taken:
            _HELD.pop(device, None)
            os.close(fd)


@contextlib.contextmanager
def _hidden(environ):
    """CUDA_VISIBLE_DEVICES="" for the block: torch sees no device, whatever the machine has."""
    previous = environ.get("CUDA_VISIBLE_DEVICES")
    environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        _restore(environ, previous)


def _first_time(environ, what: str, allocation: str | None) -> bool:
    """True the first time a job of this workflow run (``$XMC_RUN_ID``, set at start-up) says ``what``
    on this host: a marker file in the node-local folder. Without a run id, always."""
    run = environ.get(RUN_ENV)
    if not run:
        return True
    folder = default_lock_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / f"said-{_safe_name(run)}-{allocation or ''}-{what}", os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    except OSError:
        return True
    return True


def _restore(environ, previous) -> None:
    if previous is None:
        environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        environ["CUDA_VISIBLE_DEVICES"] = previous
