"""Hub encoders on clusters whose compute nodes have no internet.

The workflow's local rule ``fetch_encoders`` runs on the submit host and puts every encoder named by
a Hugging Face hub id into the cache (``$HF_HOME``, which must then be on storage the compute nodes
share); compute jobs run with ``HF_HUB_OFFLINE=1`` and :func:`resolve_cached` fails at once, with the
fix in one line, when a model is missing there. Local folders and packaged models need nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from xmc.encoders import resolve_encoder

__all__ = ["hub_ids", "missing", "prefetch", "resolve_cached", "offline"]

# Weights of other frameworks and export formats: never read by this project.
IGNORE = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "tf_model*", "flax_model*", "rust_model*",
          "onnx/*", "openvino/*", "coreml/*"]


def offline(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_ids(specs: Iterable[str]) -> list[str]:
    """The specs that name a hub model (not a local folder or an installed model package), once each."""
    found = []
    for spec in specs:
        resolved = resolve_encoder(spec)
        if not Path(resolved).exists() and resolved not in found:
            found.append(resolved)
    return found


def prefetch(ids: Iterable[str], log: Callable[[str], None] = print, download=None) -> dict[str, str]:
    """Download each hub model (PyTorch weights, config, tokenizer) into the cache; returns id -> the
    snapshot folder. ``download`` defaults to huggingface_hub.snapshot_download."""
    if download is None:
        from huggingface_hub import snapshot_download as download
    folders = {}
    for repo_id in ids:
        folders[repo_id] = str(download(repo_id=repo_id, ignore_patterns=IGNORE))
        log(f"{repo_id}: in the cache at {folders[repo_id]}")
    return folders


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def missing(specs: Iterable[str]) -> list[str]:
    """The hub ids among ``specs`` whose model is not in the cache."""
    return [repo_id for repo_id in hub_ids(specs) if not _cached(repo_id)]


def resolve_cached(spec: str, environ=None) -> str:
    """:func:`xmc.encoders.resolve_encoder`, and under ``HF_HUB_OFFLINE`` a hub model that is not in
    the cache is one clear error naming the fix (instead of transformers' connection error deep in a
    job)."""
    resolved = resolve_encoder(spec)
    if Path(resolved).exists() or not offline(environ):
        return resolved
    from huggingface_hub.constants import HF_HUB_CACHE

    if not _cached(resolved):
        raise ValueError(f"encoder {spec!r} is not in the Hugging Face cache ({HF_HUB_CACHE}) and this job runs "
                         f"offline (HF_HUB_OFFLINE=1): run `snakemake fetch_encoders` on a host with internet, "
                         f"with HF_HOME on storage the compute nodes share")
    return resolved


def model_folder(spec: str) -> str:
    """The folder holding an encoder's files: a path or package as resolved, a hub id's snapshot in
    the cache (never downloaded here: it was, for the jobs that used it)."""
    resolved = resolve_cached(spec)
    if Path(resolved).is_dir():
        return resolved
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id=resolved, local_files_only=True)
