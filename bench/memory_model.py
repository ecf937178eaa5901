#!/usr/bin/env python
"""The memory model: each rule's peak memory and time as a line in the size of its inputs, fitted on
the scaling benchmark's jobs (bench/scale.py -> bench/results/scale_stages.csv), its predictions for
the paper's four datasets, and the lines profiles/slurm asks for.

    python -m bench.memory_model                      # fit, print, write bench/results/memory_model*.csv
    python -m bench.memory_model --profile-lines      # ... and print set-resources lines for profiles/slurm
    python -m bench.memory_model --write-profile      # ... and write them into profiles/slurm/config.yaml
    python -m bench.memory_model --check profiles/slurm/config.yaml

Per rule, from the sizes the benchmark ran (unsharded jobs; the rankers' negatives together, their
inputs apart: a ``tfidf`` and a ``tfidf+neural`` line each):

    peak MiB = a + b * input MiB        time s (2 cores) = c + d * input MiB

``input MiB`` is what Snakemake gives a resource expression as ``input.size_mb`` (uncompressed
.npz: 8 bytes per stored entry). A ranker shard reads the whole input but trains 1/S of the labels,
so its ``b`` splits into a part every shard pays and a part divided by S (from the sharded and the
unsharded jobs at the top size); profiles/slurm reads S from the job's ``shards`` wildcard. A ranker
rule's profile entry keeps its sparse and dense lines and picks one by the job's ``input`` wildcard,
capped at the profile's ``# site-limits:``. ``--check`` evaluates the profile with Snakemake's own
resource evaluator and fails when it asks for less than a measured job used. ``--stages`` takes
several benchmark runs (the earlier one's 500k rows and sharded rankers, a later one's tfidf+neural
rankers); a size measured in both counts its heavier job. The predictions scale each rule's input at
the largest size it ran by the dataset's nnz(X) + nnz(Y) against the synthetic one's (nnz(X) from
TF-IDF entries per document measured on EURLEX57K, stated above PAPER below), and its dense
embeddings apart: by the documents and from the tiny encoder's width to 1,024 (the paper's large
encoders).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import yaml

from bench.common import ROOT, parser, write_csv

# the paper's Table 1 (train N, L, labels per document). TF-IDF entries per document: measured on
# EURLEX57K with our default TF-IDF (unigrams + bigrams, 200,000 features: 23,170,208 entries over
# 45,000 training documents) and taken for the long-text sets; a fifth of it for AmazonCat's short
# product texts (an assumption). Give your data's figure with --eurlex-nnz.
PAPER = {
    "Eurlex-4K": dict(n_train=15_449, n_test=3_865, labels=3_956, labels_per_doc=5.30, nnz_per_doc=None),
    "Wiki10-31K": dict(n_train=14_146, n_test=6_616, labels=30_938, labels_per_doc=18.64, nnz_per_doc=None),
    "AmazonCat-13K": dict(n_train=1_186_239, n_test=306_782, labels=13_330, labels_per_doc=5.04, nnz_per_doc="short"),
    "Wiki-500K": dict(n_train=1_779_881, n_test=769_421, labels=501_070, labels_per_doc=4.75, nnz_per_doc=None),
}
LONG_TEXT_NNZ_PER_DOC = 515  # EURLEX57K's, measured (above)
PAPER_EMB_DIM = 1024  # the paper's large encoders (BERT, RoBERTa, XLNet large): phi_neural's width
RANKER_RULES = ("train_ranker", "merge_ranker", "predict_ranker")


def rule_of(step: str, wildcards) -> str | None:
    """The Snakemake rule of a benchmarked job (benchmark files are named by step and wildcards)."""
    wc = "" if pd.isna(wildcards) else str(wildcards)
    linear = wc.endswith(".linear")
    return {"label_repr": "label_repr_pifa_tfidf",
            "train_matcher": "train_linear_matcher" if linear else "train_matcher",
            "predict_matcher": "predict_linear_matcher" if linear else "predict_matcher"}.get(step, step)


def input_of(rule: str, wildcards) -> str:
    """A ranker job's input (``tfidf``, ``tfidf+neural``...: the third of its wildcards
    indexer.matcher.input.negatives[...]); '' for every other rule."""
    if rule not in RANKER_RULES or pd.isna(wildcards):
        return ""
    parts = str(wildcards).split(".")
    return parts[2] if len(parts) > 3 else ""


def with_rules(stages: pd.DataFrame) -> pd.DataFrame:
    """The jobs with their rule and ranker input (``shards``, as bench/scale.py writes it, is 1 but
    for ranker shards; ``dense_mb``, the part of ``input_mb`` in dense embeddings, 0 where a run did
    not record it)."""
    rules = [rule_of(s, w) for s, w in zip(stages["step"], stages["wildcards"])]
    dense = stages["dense_mb"].fillna(0.0) if "dense_mb" in stages else 0.0
    return stages.assign(rule=rules, input=[input_of(r, w) for r, w in zip(rules, stages["wildcards"])],
                         dense_mb=dense)


def read_stages(paths) -> pd.DataFrame:
    """One or more bench/scale.py stage tables as one (each row keeps its run's commit and date;
    ``run``: the table's position in ``paths``)."""
    return with_rules(pd.concat([pd.read_csv(p).assign(run=i) for i, p in enumerate(paths)], ignore_index=True))


def fit(stages: pd.DataFrame) -> pd.DataFrame:
    """Per rule and ranker input: a, b (MiB), c, d (s) by least squares over the unsharded jobs'
    (input MiB, peak, time) with b, d >= 0; the share of b a ranker shard pays whole (``b_shared``;
    the rest is divided by S); and the factor by which the line must grow to cover every job. Per
    size, the heaviest variant (a ranker's TFN+MAN...); of runs that measured the same size, the
    larger peak and the shorter time (memory does not depend on what else the machine runs, wall
    time does: a run on a busy machine takes longer)."""
    rows = []
    jobs = stages[(stages["shards"] == 1) & (stages["input_mb"] > 0)]
    jobs = jobs.assign(run=jobs["run"] if "run" in jobs else 0)
    for (rule, inp), g in jobs.groupby(["rule", "input"]):
        g = g.groupby(["labels", "run"]).agg(x=("input_mb", "max"), mem=("max_rss_mb", "max"), s=("s", "max"))
        g = g.groupby("labels").agg(x=("x", "max"), mem=("mem", "max"), s=("s", "min"))
        if len(g) < 2:  # one size (merge_ranker runs only where the rankers are sharded): proportional
            a, b, c, d = 0.0, float(g["mem"].iloc[0] / g["x"].iloc[0]), 0.0, float(g["s"].iloc[0] / g["x"].iloc[0])
        else:
            a, b = _line(g["x"], g["mem"])
            c, d = _line(g["x"], g["s"])
        same = stages[(stages["rule"] == rule) & (stages["input"] == inp)]
        rows.append({"rule": rule, "input": inp, "sizes": len(g), "a_mib": a, "b_mib_per_mib": b,
                     "b_shared": _shared_share(same, a, b), "c_s": c, "d_s_per_mib": d,
                     "max_input_mib": g["x"].max(), "max_peak_mib": g["mem"].max(), "max_s": g["s"].max(),
                     "cover_mem": float(np.max(g["mem"] / (a + b * g["x"]))),
                     "cover_s": float(np.max(g["s"] / (c + d * g["x"])))})
    return pd.DataFrame(rows)


def _shared_share(jobs: pd.DataFrame, a: float, b: float) -> float:
    """The share of ``b`` a shard of S pays in full, from its sharded jobs: a shard's peak P =
    a + b * x * (shared + (1 - shared) / S), so shared = ((P - a) / (b x) - 1/S) / (1 - 1/S); the
    largest over shards (every shard must fit). 1 (no saving assumed) for a rule never sharded."""
    sharded = jobs[jobs["shards"] > 1]
    if sharded.empty or b <= 0:
        return 1.0
    S, x, peak = sharded["shards"].to_numpy(float), sharded["input_mb"].to_numpy(float), sharded["max_rss_mb"].to_numpy(float)
    shared = ((peak - a) / (b * x) - 1 / S) / (1 - 1 / S)
    return float(np.clip(shared.max(), 0.0, 1.0))


def shard_peak(m, input_mib: float, shards: int = 1) -> float:
    """The model's peak MiB of one job of ``m``'s rule with ``input_mib`` of inputs, one of ``shards``."""
    return m["a_mib"] + m["b_mib_per_mib"] * input_mib * (m["b_shared"] + (1 - m["b_shared"]) / shards)


def _line(x, y) -> tuple[float, float]:
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    if slope < 0:  # flat within noise: the mean
        return float(np.mean(y)), 0.0
    if intercept < 0:  # through the smallest point's share instead of a negative base
        slope = float(np.max(np.asarray(y) / np.asarray(x)))
        intercept = 0.0
    return float(intercept), float(slope)


def paper_sizes(eurlex_nnz_per_doc: float) -> pd.DataFrame:
    rows = []
    for name, p in PAPER.items():
        per_doc = {None: eurlex_nnz_per_doc, "short": eurlex_nnz_per_doc / 5}[p["nnz_per_doc"]]
        rows.append({"dataset": name, "n_train": p["n_train"], "n_test": p["n_test"], "labels": p["labels"],
                     "nnz_X": p["n_train"] * per_doc, "nnz_Y": p["n_train"] * p["labels_per_doc"]})
    return pd.DataFrame(rows)


def split_of(rule: str, wildcards) -> str:
    """The split whose embeddings a job reads: a prediction's (its wildcards end with it), else train."""
    last = "" if pd.isna(wildcards) else str(wildcards).rsplit(".", 1)[-1]
    return "test" if rule.startswith("predict") and last == "test" else "train"


def paper_input_mib(job, d) -> float:
    """A benchmark job's input MiB scaled to paper dataset ``d``: the sparse part by nnz(X) + nnz(Y),
    the dense embeddings (``dense_mb``) by the split's documents and from the job's embedding width
    (``emb_dim``) to PAPER_EMB_DIM. The synthetic validation split is a tenth of train, as the
    paper datasets' is here (validation.fraction), so it scales as train does."""
    sparse = (job["input_mb"] - job["dense_mb"]) * (d["nnz_X"] + d["nnz_Y"]) / (job["nnz_X"] + job["nnz_Y"])
    if not job["dense_mb"] > 0:
        return float(sparse)
    split = split_of(job["rule"], job["wildcards"])
    docs = d["n_test"] / job["n_test"] if split == "test" else d["n_train"] / job["n_train"]
    return float(sparse + job["dense_mb"] * docs * PAPER_EMB_DIM / job["emb_dim"])


def predict(model: pd.DataFrame, stages: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Each CPU rule's (and ranker input's) peak MiB and 2-core minutes on each paper dataset: its
    heaviest job at the largest synthetic size it ran, scaled (:func:`paper_input_mib`)."""
    rows = []
    for _, m in model[model["rule"].isin(PROFILED)].iterrows():  # not the tiny encoder's GPU rules
        jobs = stages[(stages["rule"] == m["rule"]) & (stages["input"] == m["input"]) & (stages["input_mb"] > 0)]
        if jobs.empty:
            continue
        top = jobs[jobs["labels"] == jobs["labels"].max()]
        ref = top.loc[top["input_mb"].idxmax()]
        for _, d in paper.iterrows():
            x = paper_input_mib(ref, d)
            rows.append({"rule": m["rule"], "input": m["input"], "dataset": d["dataset"], "input_mib": x,
                         "peak_mib": shard_peak(m, x), "minutes_2_cores": (m["c_s"] + m["d_s_per_mib"] * x) / 60})
    return pd.DataFrame(rows)


def profile_value(profile: dict, rule: str, key: str, input_mb: float, attempt: int = 1, shards: int = 1,
                  input_name: str = ""):
    """A profile resource of ``rule`` evaluated by Snakemake's own resource evaluator (the namespace
    a job's expression sees: input, wildcards, attempt, threads); ``input_name``: a ranker job's
    ``input`` wildcard (``tfidf``, ``tfidf+neural``...)."""
    from snakemake.iocontainers import Wildcards
    from snakemake.resources import Resource

    value = profile.get("set-resources", {}).get(rule, {}).get(key)
    if value is None:
        value = profile.get("default-resources", {}).get(key)
    if not isinstance(value, str):
        return value
    wildcards = Wildcards(fromdict={**({"shard": "0", "shards": str(shards)} if shards > 1 else {}),
                                    **({"input": input_name} if input_name else {})})
    return Resource.from_cli_expression(key, value).evaluate(
        wildcards=wildcards, input=SimpleNamespace(size_mb=input_mb), attempt=attempt, threads=1,
        rulename=rule, async_run=None).value


def check(profile_path: Path, stages: pd.DataFrame) -> list[str]:
    """Jobs of the benchmark whose measured peak (time on 2 cores) exceeds what the profile asks for."""
    profile = yaml.safe_load(profile_path.read_text())
    short = []
    for _, job in stages[stages["input_mb"] > 0].iterrows():
        size = dict(input_mb=job["input_mb"], shards=int(job["shards"]), input_name=str(job.get("input") or ""))
        mem = profile_value(profile, job["rule"], "mem_mb", **size)
        minutes = profile_value(profile, job["rule"], "runtime", **size)
        where = f"{job['rule']} at {job['labels']} labels ({job['wildcards']})"
        if mem is not None and mem < job["max_rss_mb"]:
            short.append(f"{where}: peak {job['max_rss_mb']:.0f} MiB > mem_mb {mem:.0f}")
        if minutes is not None and minutes * 60 < job["s"]:
            short.append(f"{where}: {job['s']:.0f} s > runtime {minutes:.0f} min")
    return short


# the CPU rules; the GPU rules' host memory depends on the encoder, which the benchmark's tiny one
# does not represent: profiles/slurm keeps fixed figures for them
PROFILED = ("tfidf", "tokenize", "label_repr_pifa_tfidf", "cluster", "train_linear_matcher", "predict_linear_matcher",
            "train_ranker", "merge_ranker", "predict_ranker", "train_peer")
MEM_MARGIN, TIME_MARGIN = 1.5, 3.0  # over the fitted line: other data, other CPUs, other library builds
MEM_FLOOR_MB, TIME_FLOOR_MIN = 2000, 30
# the scaling runs fitted together: 2026-12-03 (4k-500k labels, tfidf rankers, peers, shards) and
# the tfidf+neural rankers' run (bench/scale.py's tiny matcher)
STAGE_FILES = ("scale_stages.csv", "scale_stages-neural.csv")


def envelope(lines: pd.DataFrame) -> dict:
    """One line over a rule's fitted lines (its ranker inputs), each first raised until it covers
    every job it was fitted on: the largest base, the largest slope and, of that slope, the share a
    shard pays whole that keeps every line's shared part (b x shared) under it; so for any input
    MiB and shard count it asks at least what each line asks. Times alike (no shard split)."""
    cover_mem, cover_s = lines["cover_mem"].clip(lower=1.0), lines["cover_s"].clip(lower=1.0)
    b_each = cover_mem * lines["b_mib_per_mib"]
    b = float(b_each.max())
    return {"a_mib": float((cover_mem * lines["a_mib"]).max()), "b_mib_per_mib": b,
            "b_shared": float((b_each * lines["b_shared"]).max() / b) if b > 0 else 1.0,
            "c_s": float((cover_s * lines["c_s"]).max()), "d_s_per_mib": float((cover_s * lines["d_s_per_mib"]).max())}


def site_limits(text: str) -> dict:
    """The site maxima a profile documents in a ``# site-limits: cpus_per_node=64 mem_mb_per_node=...
    max_runtime_min=...`` line ({} where it has none)."""
    line = re.search(r"^# site-limits: (.*)$", text, re.M)
    return {k: int(v) for k, v in (kv.split("=") for kv in line.group(1).split())} if line else {}


# A ranker input that carries dense embeddings (phi_neural, phi_pre, phi_fnt): the profile tells
# the inputs apart by the job's `input` wildcard, as is_dense_input does here.
DENSE_MARKS = ("neural", "pre-", "fnt")
DENSE_TEST = " or ".join(f"'{mark}' in wildcards.get('input', '')" for mark in DENSE_MARKS)


def is_dense_input(name: str) -> bool:
    return any(mark in str(name) for mark in DENSE_MARKS)


def _expressions(m: dict) -> tuple[str, str]:
    """(memory, runtime) of one fitted line ``m`` with margins, before floors, retries and caps."""
    a, b = MEM_MARGIN * m["a_mib"], MEM_MARGIN * m["b_mib_per_mib"]
    if m["b_shared"] < 1:
        per = f"({m['b_shared']:.2f} + {1 - m['b_shared']:.2f} / int(wildcards.get('shards', 1)))"
        mem = f"{a:.0f} + {b:.2f} * input.size_mb * {per}"
    else:
        mem = f"{a:.0f} + {b:.2f} * input.size_mb"
    c, d = TIME_MARGIN * m["c_s"] / 60, TIME_MARGIN * m["d_s_per_mib"] / 60
    return mem, f"{c:.1f} + {d:.4f} * input.size_mb"


def profile_lines(model: pd.DataFrame, limits: dict | None = None) -> str:
    """set-resources entries for profiles/slurm: per rule its fitted line with margins and floors,
    times ``attempt`` (a job killed for memory or time comes back with twice, then three times as
    much), and never above the site's ``mem_mb_per_node`` / ``max_runtime_min`` (``limits``, as
    :func:`site_limits` reads them). A ranker rule fitted on sparse and dense inputs gets both lines,
    chosen by the job's ``input`` wildcard (dense: :data:`DENSE_MARKS`); a rule with several lines
    otherwise gets their :func:`envelope`."""
    limits = limits or {}
    lines = []
    for rule, g in model[model["rule"].isin(PROFILED)].groupby("rule", sort=True):
        kinds = g["input"].map(is_dense_input) if "input" in g else pd.Series(False, index=g.index)
        if kinds.any() and not kinds.all():
            (dense_mem, dense_time), (sparse_mem, sparse_time) = (_expressions(envelope(g[kinds == k])) for k in (True, False))
            mem = f"(({dense_mem}) if ({DENSE_TEST}) else ({sparse_mem}))"
            runtime = f"(({dense_time}) if ({DENSE_TEST}) else ({sparse_time}))"
        else:
            mem, runtime = _expressions(envelope(g))
        mem = f"int(max({MEM_FLOOR_MB}, {mem})) * attempt"  # whole MB, then exactly 2x, 3x on a retry
        runtime = f"int(max({TIME_FLOOR_MIN}, {runtime})) * attempt"
        if "mem_mb_per_node" in limits:
            mem = f"min({limits['mem_mb_per_node']}, {mem})"
        if "max_runtime_min" in limits:
            runtime = f"min({limits['max_runtime_min']}, {runtime})"
        lines += [f"  {rule}:", f'    mem_mb: "{mem}"', f'    runtime: "{runtime}"']
    return "\n".join(lines)


def write_profile(path: Path, lines: str) -> None:
    """Put ``lines`` between the profile's ``# BEGIN memory model`` comment block and ``# END memory model``."""
    text = path.read_text()
    begin, end = text.find("# BEGIN memory model"), text.find("# END memory model")
    if begin < 0 or end < begin:
        raise SystemExit(f"{path}: no '# BEGIN memory model' ... '# END memory model' block under set-resources")
    head_end = begin
    while True:  # the comment lines that follow BEGIN stay
        nl = text.index("\n", head_end) + 1
        if not text[nl:].lstrip(" ").startswith("#") or text[nl:].lstrip(" ").startswith("# END"):
            break
        head_end = nl
    body_start = text.index("\n", head_end) + 1
    end_line = text.rfind("\n", 0, end) + 1
    path.write_text(text[:body_start] + lines + "\n" + text[end_line:])


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--stages", nargs="+", default=[str(ROOT / "bench" / "results" / f) for f in STAGE_FILES],
                   help="bench/scale.py stage tables, fitted together (default: the two runs' files)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory_model.csv"))
    p.add_argument("--eurlex-nnz", type=float, default=LONG_TEXT_NNZ_PER_DOC,
                   help="TF-IDF entries per document of a long-text dataset (default: EURLEX57K's)")
    p.add_argument("--check", metavar="PROFILE", help="fail if this profile asks for less than a measured job used")
    p.add_argument("--profile-lines", action="store_true", help="print set-resources lines for profiles/slurm")
    p.add_argument("--write-profile", nargs="?", const=str(ROOT / "profiles" / "slurm" / "config.yaml"), metavar="PROFILE",
                   help="replace the lines between the profile's BEGIN/END memory model comments")
    args = p.parse_args(argv)
    stages = read_stages(args.stages)
    if args.check:
        short = check(Path(args.check), stages)
        print("\n".join(short) or f"{args.check}: every measured job fits its mem_mb and runtime")
        sys.exit(1 if short else 0)
    model = fit(stages)
    pred = predict(model, stages, paper_sizes(args.eurlex_nnz))
    pd.set_option("display.width", 200)
    print(model.to_string(index=False, float_format=lambda v: f"{v:,.3g}"))
    for key, fmt in (("peak_mib", "{:,.0f}"), ("minutes_2_cores", "{:,.1f}")):
        table = pred.pivot_table(index=["rule", "input"], columns="dataset", values=key)[list(PAPER)]
        print(f"\n{key}:\n" + table.to_string(float_format=lambda v: fmt.format(v)))
    limits = site_limits(Path(args.write_profile or ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    if args.profile_lines:
        print("\nset-resources:\n" + profile_lines(model, limits))
    if args.write_profile:
        write_profile(Path(args.write_profile), profile_lines(model, limits))
        print(f"wrote the memory model's lines into {args.write_profile}")
    write_csv(model, args.out, float_format="%.4g")
    write_csv(pred, re.sub(r"\.csv$", "_paper.csv", args.out), float_format="%.4g")


if __name__ == "__main__":
    main()
