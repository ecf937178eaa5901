"""Row-chunked computations that a killed job resumes: each finished chunk is a file, a rerun skips
the chunks already written. For inference over millions of documents (a transformer matcher's
top-b clusters and embeddings), where a job killed at its time limit would otherwise start over."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from xmc.io import atomic_path

__all__ = ["in_chunks"]


def _save(path: Path, parts: dict) -> None:
    arrays = {}
    for name, value in parts.items():
        if sp.issparse(value):
            value = sp.csr_matrix(value)
            arrays.update({f"{name}.data": value.data, f"{name}.indices": value.indices,
                           f"{name}.indptr": value.indptr, f"{name}.shape": np.array(value.shape)})
        else:
            arrays[name] = np.asarray(value)
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def _load(path: Path) -> dict:
    with np.load(path) as f:
        names = {k.split(".")[0] for k in f.files}
        return {n: (sp.csr_matrix((f[f"{n}.data"], f[f"{n}.indices"], f[f"{n}.indptr"]), shape=tuple(f[f"{n}.shape"]))
                    if f"{n}.indptr" in f.files else f[n]) for n in names}


def in_chunks(n_rows: int, chunk_rows: int, folder, key: dict, compute: Callable[[int, int], dict],
              log: Callable[[str], None] | None = None) -> dict:
    """``compute(lo, hi)`` (a dict of CSR matrices and arrays over rows lo..hi) over every chunk of
    ``chunk_rows`` rows, joined by rows. Each chunk is written to ``folder`` as it finishes; a rerun
    with the same ``key`` (what the results depend on: model, inputs, settings) loads them instead
    of computing them again, and a different key starts afresh. The folder goes once all are joined."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if n_rows == 0:
        return compute(0, 0)
    folder = Path(folder)
    stamp = hashlib.sha256(json.dumps({**key, "n_rows": n_rows, "chunk_rows": chunk_rows},
                                      sort_keys=True, default=str).encode()).hexdigest()[:16]
    if (folder / "key").is_file() and (folder / "key").read_text() != stamp:
        shutil.rmtree(folder)  # chunks of another model, input or setting
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key").write_text(stamp)
    parts, resumed = [], 0
    for lo in range(0, n_rows, chunk_rows):
        hi = min(n_rows, lo + chunk_rows)
        path = folder / f"rows-{lo}-{hi}.npz"
        if path.is_file():
            parts.append(_load(path))
            resumed += 1
            continue
        result = compute(lo, hi)
        _save(path, result)
        parts.append(result)
    if log is not None and resumed:
        log(f"resumed: {resumed} of {len(parts)} chunks of {chunk_rows} rows read back from {folder}")
    joined = {name: (sp.vstack([p[name] for p in parts], format="csr") if sp.issparse(parts[0][name])
                     else np.concatenate([p[name] for p in parts])) for name in parts[0]}
    shutil.rmtree(folder, ignore_errors=True)
    return joined


def matcher_predictions(matcher, input_ids, attention_mask, folder, key: dict, pred_params,
                        chunk_rows: int = 100_000, log=None):
    """A transformer matcher's (top-b clusters CSR, embeddings) over every row, in resumable chunks of
    whole batches (``chunk_rows`` rounded down to a multiple of ``pred_params.batch_size``), so that
    the batches, and so the results, are those of one pass. pred_params : MatcherPredParams."""
    rows = max(1, chunk_rows // pred_params.batch_size) * pred_params.batch_size
    out = in_chunks(len(input_ids), rows, folder, key, lambda lo, hi: dict(zip(("topb", "emb"), matcher.predict(
        input_ids[lo:hi], attention_mask[lo:hi], pred_params))), log)
    return out["topb"], out["emb"]


def file_stamp(path) -> list:
    """(name, size, mtime) of a file, or of each file in a folder: a rewritten input changes it."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p.relative_to(path)) if path.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in files]
