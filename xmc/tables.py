"""Result tables: the results table (one row per model and ensemble) and the paper's layouts.

- :func:`results_table`: every model and ensemble of the grid with its P@k and R@k.
- :func:`table3`: the paper's Table 3 layout: one row per method, for each dataset our P@1,3,5 with
  the paper's published figures in the adjacent columns.
- :func:`table5`: the paper's Table 5 layout: one row per configuration id (0-9) per dataset, the
  configuration, our P@1,3,5 and R@1,3,5, the paper's figures beside them and the difference.

Tables 3 and 5 (and the P@k figure) show the test split: where metrics rows carry a ``split``
(validation and test figures of the same models), :func:`keep_test_split` keeps the test rows.

All functions are pure (rows of metrics in, DataFrames out); :func:`write_table` writes a DataFrame
as CSV, Markdown, LaTeX and HTML through atomic writes. A method or configuration id that the grid
does not contain, or a figure the paper does not give, is NaN in the DataFrame and written as
:data:`MISSING`.
"""
from __future__ import annotations

import math
import re

import pandas as pd

from xmc.io import atomic_path
from xmc.peers import COST_COLUMNS as PEER_COST_COLUMNS

COLUMNS = ["dataset", "split", "model", "indexer", "matcher", "ranker_input", "negatives", "combine", "ensemble",
           "P@1", "P@3", "P@5", "R@1", "R@3", "R@5"]
METRICS = COLUMNS[-6:]
# Filled by the peers' rows only; present when some row has them.
COST_COLUMNS = list(PEER_COST_COLUMNS)
# The share (%) of the true labels in the clusters a model's matcher shortlists (its top-b): the
# most its rankers can find. Blank for ensembles, APLC and the peers; present when some row has it.
SHORTLIST_COLUMN = "shortlist_recall"
TABLE3_METRICS = METRICS[:3]
TABLE5_CONFIG = ["indexing", "matcher", "ranker_input", "negatives"]
MISSING = "n/a"
PAPER = " (paper)"
DIFF = " diff"
TEST_SPLIT = "test"


def keep_test_split(rows):
    """The test-split rows of metrics ``rows`` (list of dicts or DataFrame): those whose ``split``
    is "test", and those without a split (metrics written before splits were recorded). Rows
    without any ``split`` pass unchanged; an error if no test row is left."""
    frame = isinstance(rows, pd.DataFrame)
    if frame and "split" not in rows.columns or not frame and not any("split" in r for r in rows):
        return rows
    splits = rows["split"].tolist() if frame else [r.get("split") for r in rows]
    keep = [v == TEST_SPLIT or v is None or v == "" or (isinstance(v, float) and math.isnan(v)) for v in splits]
    if not any(keep):
        raise ValueError(f"no {TEST_SPLIT!r} split among {len(splits)} metrics rows "
                         f"(splits: {sorted({str(v) for v in splits})})")
    if frame:
        return rows[keep].reset_index(drop=True)
    return [r for r, k in zip(rows, keep) if k]


def results_table(rows: list[dict]) -> pd.DataFrame:
    """Rows (from the evaluate stage) -> DataFrame with COLUMNS (and the peers' COST_COLUMNS when a
    row has them, blank for the others), sorted by dataset, split (test, then valid), then model,
    ensembles last within a dataset and split."""
    if not rows:
        raise ValueError("no metrics to tabulate")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(f"metrics row for {rows[0].get('model')!r} lacks {missing}")
    optional = [SHORTLIST_COLUMN] + COST_COLUMNS
    columns = COLUMNS + [c for c in optional if any(row.get(c) is not None for row in rows)]
    df = pd.DataFrame(rows).reindex(columns=columns)
    df = df.astype({c: object for c in columns if c in optional}).fillna("")  # blank, not NaN
    df["_is_ensemble"] = df["ensemble"] != ""
    df["_split"] = df["split"].map({"test": 0, "valid": 1}).fillna(2)
    df = df.sort_values(["dataset", "_split", "_is_ensemble", "model"], kind="stable").drop(
        columns=["_is_ensemble", "_split"])
    return df.reset_index(drop=True)


# ---- the paper's layouts --------------------------------------------------------------------
def _metrics_by_model(rows: list[dict], metrics: list[str]) -> dict[tuple[str, str], dict]:
    """(dataset, model) -> its metrics row; every row must carry ``metrics``."""
    out = {}
    for row in rows:
        for key in ("dataset", "model", *metrics):
            if key not in row:
                raise ValueError(f"metrics row for {row.get('dataset')!r}/{row.get('model')!r} lacks {key!r}")
        out[row["dataset"], row["model"]] = row
    return out


def _normalise(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def paper_dataset(dataset: str, paper_datasets) -> str | None:
    """The paper's name for one of our datasets: the one equal to it up to case and punctuation
    (``eurlex-4k`` -> ``Eurlex-4K``), else None (the paper has no figures for it)."""
    by_key = {_normalise(name): name for name in paper_datasets}
    return by_key.get(_normalise(dataset))


def _paper_suffix(dataset: str, paper_name: str | None) -> str:
    """`` (paper)``, or `` (paper eurlex-4k)`` where the figures are another dataset's."""
    if paper_name and _normalise(paper_name) != _normalise(dataset):
        return f" (paper {paper_name})"
    return PAPER


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def table3(rows: list[dict], methods: dict[str, str | None], paper: dict[str, dict[str, tuple]],
           datasets: list[str], paper_names: dict[str, str | None] | None = None,
           notes: dict[str, str] | None = None) -> pd.DataFrame:
    """The paper's Table 3 layout.

    rows : metrics rows (keys ``dataset``, ``model``, ``P@1``, ``P@3``, ``P@5``), one per model.
    methods : row label -> the model or ensemble of our grid that implements it (None: not in the grid).
    paper : row label -> paper dataset name -> (P@1, P@3, P@5) as published.
    datasets : our datasets, in column order.
    paper_names : our dataset -> the paper dataset whose figures go beside it (None: none); a dataset
        left out is matched by :func:`paper_dataset` (same name up to case and punctuation).

    Returns one row per method (``methods`` first, then paper-only rows such as methods we do not
    run), columns ``method``, ``model``, then per dataset ``{ds} P@k`` and ``{ds} P@k (paper)``
    (``(paper {name})`` where the figures are those of another paper dataset ``name``).
    notes : row label -> a short note where our row is a substitute for the paper's
        (:func:`xmc.paper.table3_notes`); given, a last column ``note``.
    A model of the grid without metrics in ``rows`` is an error (the workflow makes every metrics
    file an input); a method outside the grid has NaN figures and model :data:`MISSING`. Only the
    test split's rows are read (:func:`keep_test_split`).
    """
    by_model = _metrics_by_model(keep_test_split(rows), TABLE3_METRICS)
    labels = list(methods) + [label for label in paper if label not in methods]
    paper_datasets = {ds for figures in paper.values() for ds in figures}
    paper_names = {ds: paper_dataset(ds, paper_datasets) for ds in datasets} | (paper_names or {})
    out = []
    for label in labels:
        model = methods.get(label)
        line = {"method": label, "model": model if model else MISSING}
        published = paper.get(label, {})
        for ds in datasets:
            if model and (ds, model) not in by_model:
                raise ValueError(f"no metrics for model {model!r} (Table 3 row {label!r}) on dataset {ds!r}")
            ours = by_model[ds, model] if model else {}
            theirs = published.get(paper_names.get(ds)) if paper_names.get(ds) else None
            for i, metric in enumerate(TABLE3_METRICS):
                line[f"{ds} {metric}"] = _number(ours.get(metric))
                line[f"{ds} {metric}{_paper_suffix(ds, paper_names.get(ds))}"] = \
                    _number(theirs[i]) if theirs is not None else math.nan
        if notes is not None:
            line["note"] = notes.get(label, "")
        out.append(line)
    return pd.DataFrame(out)


def _describe(paper: dict[str, dict[int, dict]], config_id: int, prefer: str | None) -> dict:
    """A configuration id's description; the ids mean the same configuration on every dataset."""
    for ds in ([prefer] if prefer else []) + list(paper):
        if config_id in paper.get(ds, {}):
            spec = paper[ds][config_id]
            return {key: spec.get(key, "") for key in TABLE5_CONFIG}
    return {key: "" for key in TABLE5_CONFIG}


def same_data(datasets: list[str], paper_names: dict[str, str | None],
              declared: dict[str, bool] | None = None) -> dict[str, bool]:
    """Our dataset -> whether it IS the paper dataset whose figures stand beside it (the same
    documents and split, so a difference means something): ``declared`` (the config's
    ``datasets.<name>.same_as_paper``) where given, else whether the names match up to case and
    punctuation (``eurlex-4k`` beside Eurlex-4K: yes; ``eurlex57k`` beside Eurlex-4K: no)."""
    declared = declared or {}
    return {ds: bool(paper_names.get(ds)) and bool(declared.get(ds, _normalise(paper_names[ds]) == _normalise(ds)))
            for ds in datasets}


def _same_model_notes(ids: dict[int, str | None]) -> dict[int, str]:
    """id -> "same model as id j" where ids name one model (one encoder playing two roles)."""
    out = {}
    for i, model in ids.items():
        twins = [str(j) for j, other in ids.items() if j != i and model and other == model]
        if twins:
            out[i] = f"same model as id{'s' if len(twins) > 1 else ''} {', '.join(twins)}"
    return out


def table5(rows: list[dict], ids: dict[int, str | None], paper: dict[str, dict[int, dict]],
           datasets: list[str], paper_names: dict[str, str | None] | None = None,
           roles: dict[int, str] | None = None, same: dict[str, bool] | None = None) -> pd.DataFrame:
    """The paper's Table 5 layout: one row per configuration id per dataset.

    rows : metrics rows (keys ``dataset``, ``model`` and :data:`METRICS`), one per model/ensemble.
    ids : configuration id -> the model or ensemble of our grid (None: not in the grid).
    paper : paper dataset name -> id -> {"indexing", "matcher", "ranker_input", "negatives",
        "P@1", ..., "R@5"} as published.
    datasets, paper_names : as in :func:`table3`.

    roles : id -> the encoder that played each of its roles (:func:`xmc.paper.table5_roles`);
        given, a column ``roles`` after ``model``.
    same : our dataset -> whether it is the paper's own dataset (the config's
        ``datasets.<name>.same_as_paper``); a dataset left out: :func:`same_data`'s name rule.

    Columns: ``dataset``, ``paper_dataset`` (whose figures are beside ours), ``id``, the configuration (:data:`TABLE5_CONFIG`, the paper's wording),
    ``model`` [, ``roles``], then per metric ``P@k``, ``P@k (paper)``, and ``P@k diff`` (ours -
    paper) only where a dataset is the paper's own (NaN for the others; no diff columns at all when
    none is: a difference between two datasets is no result), then ``note`` ("same model as id 2"
    where ids name one model). Ids missing from the grid keep their row with NaN figures and model
    :data:`MISSING`. Only the test split's rows are read (:func:`keep_test_split`).
    """
    by_model = _metrics_by_model(keep_test_split(rows), METRICS)
    paper_names = {ds: paper_dataset(ds, paper) for ds in datasets} | (paper_names or {})
    own = same_data(datasets, paper_names, same)
    twins = _same_model_notes(ids)
    all_ids = sorted(set(ids) | {i for figures in paper.values() for i in figures})
    out = []
    for ds in datasets:
        published = paper.get(paper_names.get(ds), {}) if paper_names.get(ds) else {}
        for config_id in all_ids:
            model = ids.get(config_id)
            if model and (ds, model) not in by_model:
                raise ValueError(f"no metrics for model {model!r} (Table 5 id {config_id}) on dataset {ds!r}")
            ours = by_model[ds, model] if model else {}
            theirs = published.get(config_id, {})
            line = {"dataset": ds, "paper_dataset": paper_names.get(ds) or MISSING, "id": config_id,
                    **_describe(paper, config_id, paper_names.get(ds)), "model": model if model else MISSING}
            if roles is not None:
                line["roles"] = roles.get(config_id, "")
            for metric in METRICS:
                mine, pub = _number(ours.get(metric)), _number(theirs.get(metric))
                line[metric] = mine
                line[f"{metric}{PAPER}"] = pub
                if any(own.values()):
                    line[f"{metric}{DIFF}"] = mine - pub if own[ds] else math.nan
            line["note"] = twins.get(config_id, "")
            out.append(line)
    return pd.DataFrame(out)


# ---- writers --------------------------------------------------------------------------------
def _cell(column: str, value, digits: int) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING
        value = round(value, digits) + 0.0  # no "-0.00"
        return f"{value:+.{digits}f}" if column.endswith(DIFF) else f"{value:.{digits}f}"
    return str(value)


def _is_numeric(df: pd.DataFrame, column: str) -> bool:
    return column in METRICS or column in COST_COLUMNS or pd.api.types.is_numeric_dtype(df[column])


def to_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub Markdown table (no extra dependency: pandas' to_markdown needs tabulate); numbers
    right-aligned, NaN written as :data:`MISSING`, differences signed."""
    lines = ["| " + " | ".join(df.columns) + " |",
             "|" + "|".join("---:" if _is_numeric(df, c) else "---" for c in df.columns) + "|"]
    lines += ["| " + " | ".join(_cell(c, v, digits) for c, v in zip(df.columns, row)) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                   "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def _latex_header(name: str) -> str:
    paper = re.search(r" \((paper[^)]*)\)$", name)
    if paper:
        return latex_escape(paper.group(1))
    if name.endswith(DIFF):
        return r"$\Delta$"
    return latex_escape(name)


def to_latex(df: pd.DataFrame, groups: list[str] | None = None, digits: int = 2) -> str:
    """A booktabs ``tabular`` (no jinja2 needed, unlike pandas' Styler). Columns named
    ``"{group} {rest}"`` for a group in ``groups`` get a two-row header with the group spanning them."""
    cols = list(df.columns)
    owner = []
    for c in cols:
        owner.append(next((g for g in groups or [] if c.startswith(g + " ")), None))
    align = "".join("r" if _is_numeric(df, c) else "l" for c in cols)
    lines = [r"% written by xmc.tables; needs \usepackage{booktabs}", rf"\begin{{tabular}}{{{align}}}", r"\toprule"]
    if any(owner):
        spans, start = [], 0
        cells = []
        while start < len(cols):
            end = start
            while end + 1 < len(cols) and owner[end + 1] == owner[start]:
                end += 1
            width = end - start + 1
            if owner[start]:
                cells.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(owner[start])}}}")
                spans.append(rf"\cmidrule(lr){{{start + 1}-{end + 1}}}")
            else:
                cells.extend([""] * width)
            start = end + 1
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(spans))
    names = [c[len(g) + 1:] if g else c for c, g in zip(cols, owner)]
    lines.append(" & ".join(_latex_header(n) for n in names) + r" \\")
    lines.append(r"\midrule")
    for row in df.itertuples(index=False):
        lines.append(" & ".join(latex_escape(_cell(c, v, digits)) for c, v in zip(cols, row)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def html_page(sections: list[tuple[str, pd.DataFrame]], digits: int = 2) -> str:
    """A standalone HTML page with one table per (heading, DataFrame) section (Snakemake's report
    shows HTML results inline)."""
    body = []
    for heading, df in sections:
        formatters = {c: (lambda v, c=c: _cell(c, v, digits)) for c in df.columns}
        if heading:
            body.append(f"<h3>{heading}</h3>")
        body.append(df.to_html(index=False, na_rep=MISSING, formatters=formatters, border=0, justify="center"))
    style = ("body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
             "td,th{padding:2px 8px;border-bottom:1px solid #ddd}td{text-align:right}")
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><style>" + style + "</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def to_html(df: pd.DataFrame, digits: int = 2) -> str:
    return html_page([("", df)], digits)


def write_table(df: pd.DataFrame, csv=None, markdown=None, latex=None, html=None,
                groups: list[str] | None = None, caption: str | None = None) -> None:
    """Write ``df`` in the formats given a path; NaN is written as :data:`MISSING`. ``caption``
    (e.g. which split the figures are) heads the Markdown and HTML tables and is a comment above
    the LaTeX one."""
    if csv is not None:
        with atomic_path(csv) as tmp:
            df.to_csv(tmp, index=False, float_format="%.2f", na_rep=MISSING)
    if markdown is not None:
        with atomic_path(markdown) as tmp:
            tmp.write_text((f"{caption}\n\n" if caption else "") + to_markdown(df), encoding="utf-8")
    if latex is not None:
        with atomic_path(latex) as tmp:
            tmp.write_text((f"% {caption}\n" if caption else "") + to_latex(df, groups=groups), encoding="utf-8")
    if html is not None:
        with atomic_path(html) as tmp:
            tmp.write_text(html_page([(caption or "", df)]), encoding="utf-8")
