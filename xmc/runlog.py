"""Logging for workflow scripts: everything (log records, progress bars, tracebacks) goes to the
rule's `log:` file, and a failure leaves a one-line reason at the end of it."""
from __future__ import annotations

import logging
import sys


def start(log_path: str, name: str) -> logging.Logger:
    """Send stderr (tqdm bars, warnings, tracebacks) and a logger to ``log_path``."""
    stream = open(log_path, "w", buffering=1, encoding="utf-8")
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return logging.getLogger(name)
