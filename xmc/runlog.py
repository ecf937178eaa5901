"""Logging for workflow scripts: everything (log records, progress bars, tracebacks) goes to the
rule's `log:` file, and a failure leaves a one-line reason at the end of it. Warnings also go to the
console Snakemake prints to, where a person sees them without opening the log (a GPU request that
could not be met, labels without text, ...)."""
from __future__ import annotations

import atexit
import logging
import resource
import sys

PEAK_LINE = "peak memory (getrusage): %.1f MiB"  # xmc.timing reads it back


def peak_rss_mib() -> float:
    """This process's (or its largest child's) peak resident memory, exact: Snakemake's benchmark
    samples memory every 0.5 s for 15 s, then every 30 s, and misses most peaks of longer jobs."""
    kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return kib / 1024.0


def start(log_path: str, name: str) -> logging.Logger:
    """Send stderr (tqdm bars, warnings, tracebacks) and a logger to ``log_path``; log records of
    level WARNING and above also to the process's original stderr."""
    console = sys.__stderr__
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
    atexit.register(lambda: logger.info(PEAK_LINE, peak_rss_mib()))
    return logger
