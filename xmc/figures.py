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


# Row groups, in order (xmc.paper.FIGURE_GROUPS; repeated so that plotting needs no config).
GROUPS = ("X-Transformer models", "linear baselines", "ensembles", "related systems", "peers")
OTHER = "other"
_GROUP_COLOURS = dict(zip(GROUPS + (OTHER,), ("tab:blue", "tab:orange", "tab:red", "tab:green", "tab:purple",
                                              "tab:gray")))


def _axis_range(values: np.ndarray) -> tuple[float, float]:
    """An axis that shows 1-2 point differences: the data's range plus room for the value labels,
    at least 4 points wide."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = max(0.6, 0.08 * (hi - lo))
    lo, hi = lo - pad, hi + 2.2 * pad  # labels sit right of the dots
    if hi - lo < 4.0:
        mid = (lo + hi) / 2
        lo, hi = mid - 2.0, mid + 2.0
    return max(lo, 0.0), min(hi, 100.0 + 2.2 * pad)


def precision_at_k_rows(metrics: pd.DataFrame, groups: dict[str, str] | None = None) -> pd.DataFrame:
    """The figure's rows: the test split (``split`` == "test" where there is a split column), a
    ``group`` column (``groups``; a model not in it is an ensemble if its ``ensemble`` column says
    so, else :data:`OTHER`), in :data:`GROUPS` order, by P@1 (then P@3, P@5) descending within a
    group."""
    from xmc.tables import keep_test_split  # tables imports nothing from here; kept local all the same

    missing = [c for c in ("model", *PRECISION_METRICS) if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics: lacks columns {missing}")
    rows = keep_test_split(metrics).copy()
    if rows.empty:
        raise ValueError("metrics: no models")
    groups = groups or {}
    is_ensemble = rows["ensemble"].fillna("").astype(str) != "" if "ensemble" in rows.columns else \
        pd.Series(False, index=rows.index)
    rows["group"] = [groups.get(m, GROUPS[2] if ens else OTHER) for m, ens in zip(rows["model"], is_ensemble)]
    order = {g: i for i, g in enumerate(GROUPS + (OTHER,))}
    rows["_group"] = rows["group"].map(lambda g: order.get(g, len(order)))
    rows = rows.sort_values(["_group", *PRECISION_METRICS], ascending=[True, False, False, False], kind="stable")
    return rows.drop(columns="_group").reset_index(drop=True)


def precision_at_k_figure(metrics: pd.DataFrame, labels: dict[str, str] | None = None, title: str = "",
                          groups: dict[str, str] | None = None, marks: dict[str, str] | None = None) -> Figure:
    """A dot plot of P@1, P@3, P@5 (one panel each, shared rows) of the test split's models.

    metrics : rows with ``model`` and P@k (and ``split``, ``ensemble`` if known; see
    :func:`precision_at_k_rows`: grouped, by P@1 within a group); labels : model -> axis label
    (e.g. with its Table 5 ids); groups : model -> one of :data:`GROUPS`; marks : model -> which
    encoder played which paper role (``xmc.paper.role_marks``), written after the label. Each
    panel's axis spans its own values (a 0-100 axis would hide the 1-2 point differences that
    matter); a dashed line marks the best value of each panel.
    """
    rows = precision_at_k_rows(metrics, groups)
    labels, marks = labels or {}, marks or {}
    # y slots: a header line per group, then its models
    ticks, names, bold = [], [], []
    y_of_row = np.zeros(len(rows))
    y = 0
    for group, part in rows.groupby("group", sort=False):
        ticks.append(y)
        names.append(f"{group} ({len(part)})")
        bold.append(True)
        y += 1
        for i, model in zip(part.index, part["model"]):
            mark = marks.get(model, "")
            names.append(labels.get(model, model) + (f"  — {mark}" if mark else ""))
            ticks.append(y)
            bold.append(False)
            y_of_row[i] = y
            y += 1
    n_slots = y
    fig = Figure(figsize=(12, 1.4 + 0.19 * n_slots))
    axes = fig.subplots(1, len(PRECISION_METRICS), sharey=True)
    colours = [_GROUP_COLOURS.get(g, "tab:gray") for g in rows["group"]]
    for ax, metric in zip(axes, PRECISION_METRICS):
        values = rows[metric].to_numpy(dtype=float)
        ax.scatter(values, y_of_row, s=16, c=colours, zorder=3)
        for v, yy in zip(values, y_of_row):
            if np.isfinite(v):
                ax.annotate(f"{v:.2f}", (v, yy), xytext=(4, 0), textcoords="offset points", va="center",
                            fontsize=5.5, color="0.25")
        if np.isfinite(values).any():
            ax.set_xlim(*_axis_range(values))
            ax.axvline(np.nanmax(values), color="0.4", lw=0.7, ls="--", zorder=1)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("precision (%)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(True, axis="x", alpha=0.3)
        ax.grid(True, axis="x", which="minor", alpha=0.12)
        ax.grid(True, axis="y", alpha=0.12)  # a line from each label to its dots
        ax.minorticks_on()
        ax.tick_params(axis="y", which="minor", left=False)
        for yy, is_header in zip(ticks, bold):
            if is_header:
                ax.axhline(yy - 0.5, color="0.6", lw=0.6)
    axes[0].set_yticks(ticks, names, fontsize=6.5)
    for tick, is_header, text in zip(axes[0].get_yticklabels(), bold, names):
        if is_header:
            tick.set_fontweight("bold")
            tick.set_color(_GROUP_COLOURS.get(text.rsplit(" (", 1)[0], "black"))
    axes[0].set_ylim(n_slots - 0.5, -0.7)
    fig.suptitle(title or "P@k per model, test split", fontsize=10)
    fig.text(0.01, 0.005, "Rows grouped, by P@1 within a group; each panel's axis spans its own values; dashed "
             "line: the panel's best. Labels: [Table 5 ids] model \u2014 encoder = the paper role(s) it plays.",
             fontsize=6.5, color="0.3", va="bottom")
    fig.tight_layout(rect=(0, 0.25 / fig.get_figheight(), 1, 1))
    return fig


def save_figure(fig: Figure, png=None, pdf=None, dpi: int = 150) -> None:
    """Write ``fig`` as PNG and/or PDF (atomically: a failure leaves no partial file)."""
    FigureCanvasAgg(fig)
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        if path is not None:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi)
