"""Logging for workflow scripts: everything (log records, progress bars, tracebacks) goes to the
rule's `log:` file, and a failure leaves a one-line reason at the end of it. Warnings also go to the
console Snakemake prints to, where a person sees them without opening the log (a GPU request that
could not be met, labels without text, ...)."""
from __future__ import annotations

import logging
import sys


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
    return logging.getLogger(name)
