"""Stage timing: wall time and peak memory of each job, from Snakemake's ``benchmark:`` files.

A benchmark file is a TSV with a header (``s  h:m:s  max_rss  max_vms ...  cpu_time``) and one row
per repeat; the workflow writes it to ``benchmarks/{dataset}/{step}.{wildcards}.tsv`` where
``step`` is the part of the file name before the first dot (the rule's name, or its stage for
rules that share one, e.g. ``train_matcher.{indexer}.linear`` for the linear matcher).
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from xmc.runlog import PEAK_LINE, START_LINE

JOB_COLUMNS = ["dataset", "step", "wildcards", "repeats", "s", "h:m:s", "max_rss_mb", "cpu_s"]
STEP_COLUMNS = ["step", "jobs", "total_s", "total_h:m:s", "mean_s", "max_s", "max_rss_mb"]


def hms(seconds: float) -> str:
    """Seconds -> ``H:MM:SS`` (rounded to whole seconds)."""
    total = int(round(seconds))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def parse_benchmark_path(path, root) -> tuple[str, str, str]:
    """``root/{dataset}/{step}.{wildcards}.tsv`` -> (dataset, step, wildcards); a file directly
    under ``root`` has dataset ""."""
    rel = Path(path).relative_to(root)
    if rel.suffix != ".tsv":
        raise ValueError(f"benchmark file {path}: expected a .tsv file")
    dataset = "/".join(rel.parts[:-1])
    step, _, wildcards = rel.name[: -len(".tsv")].partition(".")
    return dataset, step, wildcards


def summarise_benchmark(frame: pd.DataFrame, source: str = "benchmark") -> dict:
    """One benchmark table (rows = repeats) -> mean wall time, peak RSS (MB), mean CPU time.
    Values Snakemake could not measure (``NA``, ``-``: jobs too short for the memory sampler) are NaN."""
    if "s" not in frame.columns:
        raise ValueError(f"{source}: expected Snakemake's benchmark columns (s, h:m:s, max_rss, ...), "
                         f"got {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{source}: no rows")
    num = lambda col: pd.to_numeric(frame[col], errors="coerce") if col in frame else pd.Series([float("nan")])
    seconds = float(num("s").mean())
    return {"repeats": len(frame), "s": seconds, "h:m:s": hms(seconds),
            "max_rss_mb": float(num("max_rss").max()), "cpu_s": float(num("cpu_time").mean())}


def _pattern(line: str) -> re.Pattern:
    return re.compile(re.sub(r"%\\\.[12]f", r"([0-9.]+)", re.escape(line)))


_PEAK, _START = _pattern(PEAK_LINE), _pattern(START_LINE)


def logged_peak_mib(text: str) -> float | None:
    """The exact peak memory a job's log ends with (:data:`xmc.runlog.PEAK_LINE`), or None."""
    found = _PEAK.findall(text)
    return float(found[-1]) if found else None


def logged_startup_s(text: str) -> float | None:
    """The seconds a job spent before its first log record (:data:`xmc.runlog.START_LINE`), or None."""
    found = _START.findall(text)
    return float(found[0]) if found else None


def log_path(logs_root, dataset: str, step: str, wildcards: str) -> Path:
    """The log of the job whose benchmark is ``{dataset}/{step}.{wildcards}.tsv`` (same naming)."""
    return Path(logs_root) / dataset / (f"{step}.{wildcards}.log" if wildcards else f"{step}.log")


def read_logged_peaks(logs_root, keys) -> dict[tuple[str, str, str], float]:
    """(dataset, step, wildcards) -> the peak in the job's :func:`log_path`, for the jobs whose
    log has one."""
    peaks = {}
    for ds, step, wc in keys:
        path = log_path(logs_root, ds, step, wc)
        if path.is_file():
            peak = logged_peak_mib(path.read_text(encoding="utf-8", errors="replace"))
            if peak is not None:
                peaks[(ds, step, wc)] = peak
    return peaks


def timing_table(benchmarks: dict[tuple[str, str, str], pd.DataFrame], peaks: dict | None = None) -> pd.DataFrame:
    """(dataset, step, wildcards) -> benchmark table, for every job -> one row per job
    (:data:`JOB_COLUMNS`), sorted by dataset, step, wildcards. ``peaks`` (from
    :func:`read_logged_peaks`) replace the sampled max_rss where larger: the sampler misses peaks."""
    peaks = peaks or {}
    rows = [{"dataset": ds, "step": step, "wildcards": wc, **summarise_benchmark(frame, f"{ds}/{step}.{wc}")}
            for (ds, step, wc), frame in benchmarks.items()]
    for row in rows:
        peak = peaks.get((row["dataset"], row["step"], row["wildcards"]))
        if peak is not None and not peak <= row["max_rss_mb"]:  # NaN-safe
            row["max_rss_mb"] = peak
    df = pd.DataFrame(rows, columns=JOB_COLUMNS)
    return df.sort_values(["dataset", "step", "wildcards"], kind="stable").reset_index(drop=True)


def timing_by_step(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per-step totals of :func:`timing_table` (:data:`STEP_COLUMNS`), most time first, and a last
    row ``total`` over all jobs (its max_rss_mb is the largest of one job, not a sum)."""
    if jobs.empty:
        return pd.DataFrame(columns=STEP_COLUMNS)
    grouped = jobs.groupby("step", sort=False)
    df = pd.DataFrame({"jobs": grouped.size(), "total_s": grouped["s"].sum(), "mean_s": grouped["s"].mean(),
                       "max_s": grouped["s"].max(), "max_rss_mb": grouped["max_rss_mb"].max()})
    df = df.reset_index().sort_values(["total_s", "step"], ascending=[False, True], kind="stable")
    total = {"step": "total", "jobs": len(jobs), "total_s": jobs["s"].sum(), "mean_s": jobs["s"].mean(),
             "max_s": jobs["s"].max(), "max_rss_mb": jobs["max_rss_mb"].max()}
    df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    df["total_h:m:s"] = df["total_s"].map(hms)
    df["jobs"] = df["jobs"].astype(int)
    return df[STEP_COLUMNS]


def read_benchmarks(root) -> dict[tuple[str, str, str], pd.DataFrame]:
    """Every ``*.tsv`` under ``root`` (recursively) -> {(dataset, step, wildcards): table}; an absent
    folder (no benchmarked job has run in this working directory) gives {}."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {parse_benchmark_path(path, root): pd.read_csv(path, sep="\t")
            for path in sorted(root.rglob("*.tsv"))}
