"""Figures: the label-frequency long tail, the cluster sizes of each indexer and P@k per model.

The ``*_figure`` functions take arrays/DataFrames and return a :class:`matplotlib.figure.Figure`
built without pyplot (no global state, no display: the Agg canvas renders it), and
:func:`save_figure` writes it as PNG and PDF through atomic writes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xmc.io import atomic_path

PRECISION_METRICS = ("P@1", "P@3", "P@5")


def label_frequencies(Y) -> np.ndarray:
    """Y : sparse (N, L) 0/1 -> int64 (L,): training instances per label, largest first."""
    if not sp.issparse(Y) or Y.ndim != 2:
        raise ValueError(f"Y: expected a sparse (N, L) label matrix, got {type(Y).__name__}")
    counts = np.asarray((sp.csr_matrix(Y) != 0).sum(axis=0)).ravel().astype(np.int64)
    return np.sort(counts)[::-1]


def cluster_sizes(C, Y=None) -> tuple[np.ndarray, np.ndarray | None]:
    """C : sparse (L, K) 0/1 label->cluster; Y : optional sparse (N, L).

    Returns (labels per cluster, int64 (K,)) and, with Y, (training instances with a true label in
    the cluster, int64 (K,): the column sums of M = binarised Y C), both in cluster order."""
    if not sp.issparse(C) or C.ndim != 2:
        raise ValueError(f"C: expected a sparse (L, K) label->cluster matrix, got {type(C).__name__}")
    C = (sp.csr_matrix(C) != 0).astype(np.int64)
    labels = np.asarray(C.sum(axis=0)).ravel()
    if Y is None:
        return labels, None
    if Y.shape[1] != C.shape[0]:
        raise ValueError(f"Y has {Y.shape[1]} labels but C has {C.shape[0]} rows")
    M = (sp.csr_matrix(Y) != 0).astype(np.int64) @ C
    return labels, np.asarray((M > 0).sum(axis=0)).ravel().astype(np.int64)


def label_frequency_figure(frequencies: np.ndarray, title: str = "") -> Figure:
    """The long tail: training instances per label against the label's rank (log-log). Labels with
    no training instance (test-only) cannot sit on a log axis; their count is in the legend."""
    freq = np.sort(np.asarray(frequencies))[::-1]
    if freq.size == 0:
        raise ValueError("frequencies: no labels")
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    seen = freq[freq > 0]
    rank = np.arange(1, seen.size + 1)
    few = int(((freq > 0) & (freq <= 5)).sum())
    ax.loglog(rank, seen, lw=1.5, label=f"{freq.size:,} labels; {few:,} with 1-5 instances; "
                                        f"{freq.size - seen.size:,} with none")
    ax.set_xlabel("label rank")
    ax.set_ylabel("training instances with the label")
    ax.set_title(title or "label frequency")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def cluster_size_figure(sizes: dict[str, tuple[np.ndarray, np.ndarray | None]], title: str = "") -> Figure:
    """Indexer -> (labels per cluster, training instances per cluster or None), as from
    :func:`cluster_sizes`. Left: labels per cluster; right: instances per cluster; clusters sorted
    by size, largest first, one line per indexer."""
    if not sizes:
        raise ValueError("sizes: no indexers")
    with_instances = all(inst is not None for _, inst in sizes.values())
    fig = Figure(figsize=(10 if with_instances else 5.5, 4))
    axes = fig.subplots(1, 2 if with_instances else 1, squeeze=False)[0]
    for name, (labels, instances) in sizes.items():
        x = np.arange(1, len(labels) + 1)
        axes[0].plot(x, np.sort(labels)[::-1], marker=".", lw=1, label=f"{name} (K={len(labels)})")
        if with_instances:
            axes[1].plot(x, np.sort(instances)[::-1], marker=".", lw=1, label=name)
    axes[0].set_ylabel("labels in the cluster")
    # balanced clusters: an autoscaled axis would magnify a 1-label difference; room above the lines
    axes[0].set_ylim(0, 1.15 * max(int(np.max(labels)) for labels, _ in sizes.values()))
    if with_instances:
        axes[1].set_ylabel("training instances with a label in the cluster")
        axes[1].set_yscale("log")
    for ax, where in zip(axes, ("lower left", "upper right")):
        ax.set_xlabel("cluster rank (largest first)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc=where)
    fig.suptitle(title or "cluster sizes")
    fig.tight_layout()
    return fig


def precision_at_k_figure(metrics: pd.DataFrame, labels: dict[str, str] | None = None,
                          title: str = "") -> Figure:
    """Horizontal grouped bars of P@1, P@3, P@5, one group per model (row of ``metrics``: columns
    ``model`` and P@k). ``labels`` renames models on the axis (e.g. with their Table 5 id)."""
    missing = [c for c in ("model", *PRECISION_METRICS) if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics: lacks columns {missing}")
    if metrics.empty:
        raise ValueError("metrics: no models")
    labels = labels or {}
    names = [labels.get(m, m) for m in metrics["model"]]
    n = len(names)
    fig = Figure(figsize=(8, 1.2 + 0.45 * n))
    ax = fig.add_subplot()
    y = np.arange(n)
    height = 0.8 / len(PRECISION_METRICS)
    for i, metric in enumerate(PRECISION_METRICS):
        values = metrics[metric].to_numpy(dtype=float)
        bars = ax.barh(y + (i - 1) * height, values, height=height, label=metric)
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("precision (%)")
    ax.set_xlim(0, 100)
    ax.set_title(title or "P@k per configuration")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never over a bar
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, png=None, pdf=None, dpi: int = 150) -> None:
    """Write ``fig`` as PNG and/or PDF (atomically: a failure leaves no partial file)."""
    FigureCanvasAgg(fig)
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        if path is not None:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi)
