"""The results table: one row per model and per ensemble, as CSV and Markdown."""
from __future__ import annotations

import pandas as pd

from xmc.io import atomic_path

COLUMNS = ["dataset", "model", "indexer", "matcher", "ranker_input", "negatives", "combine", "ensemble",
           "P@1", "P@3", "P@5", "R@1", "R@3", "R@5"]
METRICS = COLUMNS[-6:]


def results_table(rows: list[dict]) -> pd.DataFrame:
    """Rows (from the evaluate stage) -> DataFrame with COLUMNS, sorted by dataset then model,
    ensembles last within a dataset."""
    if not rows:
        raise ValueError("no metrics to tabulate")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(f"metrics row for {rows[0].get('model')!r} lacks {missing}")
    df = pd.DataFrame(rows)[COLUMNS].fillna("")
    df["_is_ensemble"] = df["ensemble"] != ""
    df = df.sort_values(["dataset", "_is_ensemble", "model"], kind="stable").drop(columns="_is_ensemble")
    return df.reset_index(drop=True)


def to_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub Markdown table (no extra dependency: pandas' to_markdown needs tabulate)."""
    def cell(value):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(df.columns) + " |",
             "|" + "|".join("---:" if c in METRICS else "---" for c in df.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, csv, markdown) -> None:
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.2f")
    with atomic_path(markdown) as tmp:
        tmp.write_text(to_markdown(df), encoding="utf-8")
