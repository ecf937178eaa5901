"""Benchmarks of the workflow: one question per module, run from the repository root as
``python -m bench.<name>`` (``--help`` gives the question and the command that answers it).
Shared helpers live in :mod:`bench.common`; bench/README.md is the index."""
