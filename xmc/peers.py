"""The peers as rows of our tables: PECOS XR-Linear and omikuji (Parabel) trained and run on the
workflow's own TF-IDF features and test split (``peers.systems`` in the config).

The workflow runs :mod:`workflow_scripts/peer.py <workflow_scripts.peer>` with ``peers.python``
(the workflow's own interpreter when unset): libpecos 1.2.8 needs scipy < 1.14 (it imports
``scipy.sparse.sputils``) and numpy < 2, which this project's environment does not have, so it
usually lives in an environment of its own. This module therefore imports nothing but numpy,
scipy and the standard library at module level; each peer's package is imported by its own
functions.

Each system keeps its published defaults, as a user of it would run it: XR-Linear, PIFA on the
TF-IDF, ``Indexer.gen`` (hierarchical 2-means, leaves of at most 100 labels), ``XLinearModel.train``
(C = 1, threshold 0.1, TFN negatives), beam 10; omikuji, ``Model.default_hyper_param()`` (Parabel:
3 trees of balanced 2-means, leaves of at most 100 labels). omikuji cannot be seeded (its 2-means
starts from centroids drawn by an unseeded generator), so its rows move from run to run; XR-Linear's
do not (docs/peers.md).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from xmc.vocabulary import PEERS as SYSTEMS

__all__ = ["SYSTEMS", "PACKAGES", "COST_COLUMNS", "check_available", "set_job_environment", "train", "predict",
           "merge_costs", "write_svmlight_labels"]

COST_COLUMNS = ("train_s", "predict_s", "peak_mem_mib")  # the peers' extra results-table columns
# system -> (module to import, what to install, the extra or environment that gives it)
PACKAGES = {
    "xr-linear": ("pecos.xmc.xlinear.model", "libpecos"),
    "omikuji": ("omikuji", "omikuji"),
}
_INSTALL = {
    "omikuji": "pip install -e '.[peers]' (omikuji only)",
    "xr-linear": ("libpecos 1.2.8 needs scipy < 1.14 and numpy < 2, so give it an environment of its own: "
                  "python3 -m venv .venv-peers && .venv-peers/bin/pip install 'numpy<2' 'scipy<1.14' "
                  "'scikit-learn<1.6' omikuji==0.5.2 && .venv-peers/bin/pip install --no-deps libpecos==1.2.8 "
                  "(its declared torch/transformers serve XR-Transformer only), then set peers.python: "
                  ".venv-peers/bin/python"),
}


def check_available(systems, python: str | None = None) -> None:
    """Raise ValueError, naming what to install, for each system whose package ``python`` (the
    current interpreter when None) cannot import; run at workflow start-up, before any job."""
    missing = []
    for system in systems:
        if system not in PACKAGES:
            raise ValueError(f"peers.systems: unknown system {system!r}; accepted: {', '.join(SYSTEMS)}")
        module, package = PACKAGES[system]
        if python is None:
            try:
                ok = importlib.util.find_spec(module.split(".")[0]) is not None
                why = "" if ok else f"no module named {module.split('.')[0]!r}"
                if ok:
                    importlib.import_module(module)
            except Exception as err:  # noqa: BLE001 - any import failure means the peer cannot run here
                ok, why = False, f"{type(err).__name__}: {err}"
            where = f"this environment ({sys.executable})"
        else:
            if shutil.which(python) is None:
                raise ValueError(f"peers.python: {python} does not exist or is not executable")
            proc = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
            ok = proc.returncode == 0
            why = (proc.stderr.strip().splitlines() or [""])[-1]
            where = python
        if not ok:
            missing.append(f"{system} needs the {package} package, which {where} cannot import"
                           f"{' (' + why + ')' if why else ''}; {_INSTALL[system]}")
    if missing:
        raise ValueError("peers: " + " | ".join(missing))


def set_job_environment(project_root, python: str) -> None:
    """Tell the peer rules' shell commands (rules/peers.smk) where the project and the interpreter
    are: ``XMC_PROJECT_ROOT`` and ``XMC_PEER_INTERPRETER`` in this process's environment, which its
    jobs inherit."""
    os.environ["XMC_PROJECT_ROOT"] = str(project_root)
    os.environ["XMC_PEER_INTERPRETER"] = str(python)


def _float32_csr(M) -> sp.csr_matrix:
    M = sp.csr_matrix(M, dtype=np.float32)
    M.sort_indices()
    return M


def peak_mem_mib() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- XR-Linear (PECOS) ----------------------------------------------------------------------
def _train_xr_linear(X, Y, model_dir: Path, threads: int) -> None:
    from pecos.xmc import Indexer, LabelEmbeddingFactory
    from pecos.xmc.xlinear.model import XLinearModel

    label_feat = LabelEmbeddingFactory.create(Y, X, method="pifa", threads=threads)
    cluster_chain = Indexer.gen(label_feat, threads=threads)
    XLinearModel.train(X, Y, C=cluster_chain, threads=threads).save(str(model_dir))


def _predict_xr_linear(model_dir: Path, X, top_k: int, threads: int) -> sp.csr_matrix:
    from pecos.xmc.xlinear.model import XLinearModel

    return XLinearModel.load(str(model_dir)).predict(X, only_topk=top_k, threads=threads)


# ---- omikuji (Parabel) ----------------------------------------------------------------------
def write_svmlight_labels(path, X: sp.csr_matrix, Y: sp.csr_matrix) -> None:
    """omikuji's training format (the Extreme Classification Repository's): a header
    ``n_docs n_features n_labels``, then ``l1,l2 f:v f:v ...`` per document."""
    with open(path, "w", encoding="ascii") as f:
        f.write(f"{X.shape[0]} {X.shape[1]} {Y.shape[1]}\n")
        for i in range(X.shape[0]):
            labels = ",".join(map(str, Y.indices[Y.indptr[i]:Y.indptr[i + 1]]))
            s, e = X.indptr[i], X.indptr[i + 1]
            f.write(labels + " " + " ".join(f"{j}:{v:.7g}" for j, v in zip(X.indices[s:e], X.data[s:e])) + "\n")


def _train_omikuji(X, Y, model_dir: Path, threads: int, log) -> float:
    """Returns the training time without the conversion to omikuji's text format."""
    import omikuji

    data = model_dir / "train.txt"
    t0 = time.perf_counter()
    write_svmlight_labels(data, X, Y)
    log(f"omikuji: training file written in {time.perf_counter() - t0:.1f} s (not counted as training)")
    t0 = time.perf_counter()
    model = omikuji.Model.train_on_data(str(data), omikuji.Model.default_hyper_param(), n_threads=threads)
    train_s = time.perf_counter() - t0
    data.unlink()
    model.save(str(model_dir))
    return train_s


def _predict_omikuji(model_dir: Path, X, top_k: int, n_labels: int) -> sp.csr_matrix:
    import omikuji

    model = omikuji.Model.load(str(model_dir))
    rows, cols, vals = [], [], []
    for i in range(X.shape[0]):  # omikuji's Python API predicts one document at a time
        s, e = X.indptr[i], X.indptr[i + 1]
        for label, score in model.predict(list(zip(X.indices[s:e].tolist(), X.data[s:e].tolist())), top_k=top_k):
            rows.append(i)
            cols.append(label)
            vals.append(score)
    return sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(X.shape[0], n_labels))


# ---- entry points ---------------------------------------------------------------------------
def train(system: str, X, Y, model_dir, threads: int = 1, log=print) -> dict:
    """Train ``system`` on (X, Y) into the folder ``model_dir`` (created); returns its training
    time (s, the peer's own calls, file conversion excluded) and this process's peak memory."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown peer {system!r}; accepted: {', '.join(SYSTEMS)}")
    X, Y = _float32_csr(X), _float32_csr(Y)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if system == "xr-linear":
        t0 = time.perf_counter()
        _train_xr_linear(X, Y, model_dir, threads)
        train_s = time.perf_counter() - t0
    else:
        train_s = _train_omikuji(X, Y, model_dir, threads, log)
    (model_dir / "n_labels").write_text(f"{Y.shape[1]}\n")
    return {"train_s": round(train_s, 3), "peak_mem_mib": round(peak_mem_mib(), 1)}


def predict(system: str, model_dir, X, top_k: int, threads: int = 1) -> tuple[sp.csr_matrix, dict]:
    """Top-``top_k`` label scores of each row of X (CSR, (n, L)) and the prediction time and peak memory."""
    model_dir = Path(model_dir)
    n_labels = int((model_dir / "n_labels").read_text())
    X = _float32_csr(X)
    t0 = time.perf_counter()
    if system == "xr-linear":
        pred = _predict_xr_linear(model_dir, X, top_k, threads)
    elif system == "omikuji":
        pred = _predict_omikuji(model_dir, X, top_k, n_labels)
    else:
        raise ValueError(f"unknown peer {system!r}; accepted: {', '.join(SYSTEMS)}")
    predict_s = time.perf_counter() - t0
    pred = sp.csr_matrix(pred, dtype=np.float32)
    if pred.shape != (X.shape[0], n_labels):
        raise ValueError(f"{system} predicted shape {pred.shape}, expected {(X.shape[0], n_labels)}")
    return pred, {"predict_s": round(predict_s, 3), "peak_mem_mib": round(peak_mem_mib(), 1)}


def merge_costs(infos: list[dict]) -> dict:
    """The training and prediction info of one peer -> its :data:`COST_COLUMNS` (peak memory: the
    larger of the two jobs')."""
    out = dict.fromkeys(COST_COLUMNS)
    for info in infos:
        out.update({key: info[key] for key in COST_COLUMNS if key in info and key != "peak_mem_mib"})
        out["peak_mem_mib"] = max(out["peak_mem_mib"] or 0.0, info["peak_mem_mib"])
    return out
