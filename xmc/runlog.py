"""Logging for workflow scripts: everything (log records, progress bars, tracebacks) goes to the
rule's `log:` file, and a failure leaves a one-line reason at the end of it. Warnings also go to the
console Snakemake prints to, where a person sees them without opening the log (a GPU request that
could not be met, labels without text, ...)."""
from __future__ import annotations

import atexit
import logging
import os
import resource
import sys

PEAK_LINE = "peak memory (getrusage): %.1f MiB"  # xmc.timing reads both back
START_LINE = "started %.2f s after the process (interpreter, imports)"
_started: list[logging.Logger] = []  # the logger of start(), for finish()
KEEP_LOGS = 3  # earlier logs of a job kept beside its log: <log>.1 (the last) .. <log>.3


def seconds_since_process_start() -> float | None:
    """Wall seconds since this process started, from /proc (10 ms ticks); None off Linux. What a
    job spends before its first log record: a fixed cost per job that one-process peers pay once."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
            return float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mib() -> float:
    """This process's (or its largest child's) peak resident memory, exact: Snakemake's benchmark
    samples memory every 0.5 s for 15 s, then every 30 s, and misses most peaks of longer jobs."""
    kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return kib / 1024.0


def keep_previous(log_path, keep: int = KEEP_LOGS) -> str | None:
    """Move an earlier run's log aside (``<log>.1``, the older ones to ``.2`` .. ``.keep``), so that a
    retried job does not overwrite the reason its first attempt failed. Returns the kept path."""
    path = os.fspath(log_path)
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None
    for k in range(keep - 1, 0, -1):
        if os.path.exists(f"{path}.{k}"):
            os.replace(f"{path}.{k}", f"{path}.{k + 1}")
    os.replace(path, f"{path}.1")
    return f"{path}.1"


def start(log_path: str, name: str) -> logging.Logger:
    """Send stderr (tqdm bars, warnings, tracebacks) and a logger to ``log_path``; log records of
    level WARNING and above also to the process's original stderr. An earlier log of the job (a
    failed attempt's) is kept as ``<log>.1`` (:func:`keep_previous`)."""
    console = sys.__stderr__
    kept = keep_previous(log_path)
    stream = open(log_path, "w", buffering=1, encoding="utf-8")
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if console is not None:
        loud = logging.StreamHandler(console)
        loud.setLevel(logging.WARNING)
        loud.setFormatter(logging.Formatter(f"%(levelname)s [%(name)s, log {log_path}]: %(message)s"))
        logging.getLogger().addHandler(loud)
    logger = logging.getLogger(name)
    since = seconds_since_process_start()
    if since is not None:
        logger.info(START_LINE, since)
    if kept is not None:
        logger.info("the previous run's log is kept as %s", kept)
    atexit.register(lambda: logger.info(PEAK_LINE, peak_rss_mib()))
    _started.append(logger)
    return logger


def finish() -> None:
    """End a job that has written its outputs: log the peak memory, flush and close the log and the
    console, and leave with status 0 without the interpreter's teardown.

    That teardown (freeing every module, the torch runtime) took 0.2 s for a job
    that imports xmc.ranker and 0.9 s for one that imports torch: a fixed cost per job that a grid
    of many short jobs pays again and again. Call it last, on success only (a failure raises
    before it and exits as usual); by then every output is a closed file (xmc.io writes through
    atomic_path, the scripts use ``with``), so nothing buffered is lost.
    """
    if _started:
        _started[-1].info(PEAK_LINE, peak_rss_mib())
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing left to save
            pass
    os._exit(0)
