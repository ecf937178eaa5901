#!/usr/bin/env python
"""What does each job of a Wiki-500K run ask SLURM for under profiles/slurm? config/paper.yaml's
Wiki-500K dataset alone is planned (a dry run in a temporary folder: no data, no cluster), and each
planned job's sbatch command is built by the SLURM executor plugin's own code (its partition
argument, get_submit_command and GPU flags) with the profile's mem_mb and runtime evaluated by
Snakemake's own resource evaluator at the job's Wiki-500K input size, on its first and last attempt.

    python -m bench.sbatch_plan                  # one row per rule (its largest job), markdown
    python -m bench.sbatch_plan --related        # with XR-Transformer (bert-large) and APLC (xlnet-large) on
    python -m bench.sbatch_plan --jobs           # every job, not one per rule
    python -m bench.sbatch_plan --lines          # ... and each row's whole sbatch command

A job's input MiB is what Snakemake gives a resource expression as ``input.size_mb``, estimated:
for the rules of the memory model (bench/memory_model.py), its Wiki-500K input from
bench/results/memory_model_paper.csv (a ranker's by its input: tfidf, or tfidf+neural for every
input with dense embeddings); for every other rule, the sum of its input files that can be sized
from the paper's Table 1 alone (TF-IDF at 515 entries per document, 8 bytes each; embeddings of
1,024 float32 per document; labels; top-b; clusters); other files (texts, tokens, model folders)
count 0, which only matters for rules whose profile entry reads input.size_mb. Needs
``pip install -e '.[slurm]'``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import yaml

from bench.common import ROOT, parser
from bench.memory_model import LONG_TEXT_NNZ_PER_DOC, PAPER, PAPER_EMB_DIM, PROFILED, profile_value, site_limits

DATASET, PAPER_NAME = "wiki-500k", "Wiki-500K"
ATTEMPTS = (1, 3)  # the first submission and the last retry (profiles/slurm: retries: 2)


def _value(text: str):
    try:
        return int(text)
    except ValueError:
        return text


def planned_jobs(out: str) -> list[SimpleNamespace]:
    """Every job of a dry run's listing: rule, threads, resources (as the executor would get them),
    wildcards, input files, reason."""
    jobs = []
    for block in re.split(r"\n(?= *\[[^\]]*\]\n *(?:local)?rule )", out):  # members of a group job: indented
        rule = re.search(r"^ *(?:local)?rule (\w+):", block, re.M)
        if not rule:
            continue
        threads = re.search(r"^\s+threads: (\d+)", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        resources = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        inputs = re.search(r"^\s+input: (.*)$", block, re.M)
        reason = re.search(r"^\s+reason: (.*)$", block, re.M)
        jobs.append(SimpleNamespace(rule=rule.group(1), threads=int(threads.group(1)) if threads else 1,
                                    resources={k: _value(v) for k, v in resources.items()},
                                    wildcards=wildcards.group(1) if wildcards else "",
                                    input=inputs.group(1).split(", ") if inputs else [],
                                    reason=reason.group(1) if reason else ""))
    return jobs


class _Resources(dict):
    """What the plugin reads: job.resources.get(key) and job.resources.key."""
    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def sbatch_line(job: SimpleNamespace) -> str:
    """The sbatch command the SLURM executor plugin would submit for ``job``, built by the plugin's own
    code (its Executor.run_job: partition argument, get_submit_command, then the GPU/GRES flags)."""
    from snakemake_executor_plugin_slurm import Executor
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    fake = SimpleNamespace(name=job.rule, threads=job.threads, resources=_Resources(job.resources),
                           is_group=lambda: False)
    validate_slurm_extra(fake)  # raises on flags the plugin manages itself
    executor = SimpleNamespace(_partitions=None, _fallback_partition=None, logger=None)
    params = {"run_uuid": "test", "slurm_logfile": "/tmp/%j.log", "comment_str": f"rule_{job.rule}",
              "account": "", "partition": Executor.get_partition_arg(executor, fake), "workdir": "/work"}
    return get_submit_command(fake, params) + set_gres_string(fake)


def sbatch_fields(line: str) -> dict:
    """Partition, CPUs, memory (MB), time (min) and GPUs of an sbatch line."""
    get = lambda pattern: (m.group(1) if (m := re.search(pattern, line)) else "")
    return {"partition": get(r" -p (\S+)"), "cpus": int(get(r"--cpus-per-task=(\d+)") or 1),
            "mem_mb": int(get(r"--mem (\d+)")), "minutes": int(get(r" -t (\d+)")), "gpus": get(r"--gpus=(\S+)")}


def wildcard(job, key: str) -> str:
    found = re.search(rf"(?:^|, ){key}=([^,]+)", job.wildcards)
    return found.group(1) if found else ""


def shards_of(job) -> int:
    return int(wildcard(job, "shards") or 1)


def split_docs(fraction: float = 0.1) -> dict[str, float]:
    """Wiki-500K's documents per split (Table 1; validation held out of train, config validation.fraction)."""
    p = PAPER[PAPER_NAME]
    return {"train": p["n_train"] * (1 - fraction), "valid": p["n_train"] * fraction, "test": p["n_test"]}


def file_mib(path: str, docs: dict[str, float], top_b: int = 10) -> float:
    """A Wiki-500K input file's MiB where Table 1 sizes it (0 for texts, tokens, models, label representations)."""
    p, mib = PAPER[PAPER_NAME], 2.0 ** -20
    split = re.search(r"\.(train|valid|test)\.np[yz]$", path)
    n = docs[split.group(1)] if split else 0.0
    if re.search(r"/tfidf/X\.\w+\.npz$", path):
        return n * LONG_TEXT_NNZ_PER_DOC * 8 * mib
    if path.endswith(".npy") and "/emb." in path:
        return n * PAPER_EMB_DIM * 4 * mib
    if re.search(r"/prepared/Y\.\w+\.npz$", path):
        return n * p["labels_per_doc"] * 8 * mib
    if re.search(r"/topb\.\w+\.npz$", path):
        return n * top_b * 8 * mib
    if re.search(r"/indexer/[^/]+/C\.npz$", path):
        return p["labels"] * 8 * mib
    return 0.0


def input_mib(job, model_inputs: pd.DataFrame, docs: dict[str, float]) -> tuple[float, str]:
    """The job's estimated input MiB on Wiki-500K and where it comes from."""
    if job.rule in PROFILED:
        inp = wildcard(job, "input")
        kind = "" if job.rule not in ("train_ranker", "merge_ranker", "predict_ranker") else \
            ("tfidf" if inp == "tfidf" else "tfidf+neural")
        row = model_inputs[(model_inputs["rule"] == job.rule) & (model_inputs["input"].fillna("") == kind)]
        if not row.empty:
            return float(row["input_mib"].max()), "memory model"
    return float(sum(file_mib(f, docs) for f in job.input)), "files"


def wiki500k_config(related: bool) -> dict:
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    config["datasets"] = {DATASET: config["datasets"][DATASET]}
    if related:
        config["xr_transformer"] = {**config.get("xr_transformer", {}), "encoders": ["bert-large"]}
        config["aplc"] = {**config.get("aplc", {}), "encoders": ["xlnet-large"]}
    return config


def dry_run(config: dict, profile: Path) -> str:
    """The plan of ``config`` under ``profile`` (snakemake -n in a temporary folder, offline)."""
    with tempfile.TemporaryDirectory(prefix="xmc-sbatch-plan-") as tmp:
        (Path(tmp) / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"),
                               "--directory", tmp, "--workflow-profile", str(profile),
                               "--configfile", str(Path(tmp) / "config.yaml")],
                              cwd=tmp, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-3000:])
    return done.stdout + done.stderr


def sbatch_table(jobs: list, profile: dict, model_inputs: pd.DataFrame) -> pd.DataFrame:
    """One row per job: its estimated input and, per attempt in ATTEMPTS, the sbatch line's fields."""
    docs = split_docs()
    rows = []
    for job in jobs:
        mib, source = input_mib(job, model_inputs, docs)
        row = {"rule": job.rule, "wildcards": job.wildcards, "input_mib": mib, "source": source}
        for attempt in ATTEMPTS:
            resources = dict(job.resources)
            for key in ("mem_mb", "runtime"):  # as Snakemake evaluates them when it submits this attempt
                resources[key] = profile_value(profile, job.rule, key, mib, attempt=attempt, shards=shards_of(job),
                                               input_name=wildcard(job, "input"))
            resources = {k: v for k, v in resources.items() if v != "<TBD>"}
            line = sbatch_line(SimpleNamespace(rule=job.rule, threads=job.threads, resources=resources))
            fields = sbatch_fields(line)
            row.update({f"{k}@{attempt}": v for k, v in fields.items()
                        if attempt == ATTEMPTS[0] or k in ("mem_mb", "minutes")})
            if attempt == ATTEMPTS[0]:
                row["sbatch"] = line
        rows.append(row)
    return pd.DataFrame(rows)


def per_rule(table: pd.DataFrame) -> pd.DataFrame:
    """Each rule's job with the largest memory ask on its first attempt, and the rule's job count."""
    counts = table.groupby("rule").size().rename("jobs")
    top = table.sort_values(["mem_mb@1", "input_mib"], ascending=False).drop_duplicates("rule")
    return top.join(counts, on="rule").sort_values("rule").reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    first, last = ATTEMPTS
    head = ("| rule | jobs | input MiB (from) | partition | CPUs | GPUs | mem MB | time min "
            f"| attempt {last}: mem MB, min |\n|---|---:|---:|---|---:|---:|---:|---:|---:|")
    lines = [head]
    for _, r in table.iterrows():
        jobs = f"{r['jobs']}" if "jobs" in r else "1"
        lines.append(f"| `{r['rule']}` | {jobs} | {r['input_mib']:,.0f} ({r['source']}) | {r[f'partition@{first}']} "
                     f"| {r[f'cpus@{first}']} | {r[f'gpus@{first}'] or '-'} | {r[f'mem_mb@{first}']:,} "
                     f"| {r[f'minutes@{first}']:,} | {r[f'mem_mb@{last}']:,}, {r[f'minutes@{last}']:,} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--profile", default=str(ROOT / "profiles" / "slurm"), help="a workflow profile folder")
    p.add_argument("--model", default=str(ROOT / "bench" / "results" / "memory_model_paper.csv"),
                   help="the memory model's paper-size inputs (python -m bench.memory_model)")
    p.add_argument("--related", action="store_true", help="also XR-Transformer (bert-large) and APLC (xlnet-large)")
    p.add_argument("--jobs", action="store_true", help="every job's row, not one per rule")
    p.add_argument("--lines", action="store_true", help="also print each row's whole sbatch command (first attempt)")
    args = p.parse_args(argv)
    profile_path = Path(args.profile) / "config.yaml"
    profile = yaml.safe_load(profile_path.read_text())
    model = pd.read_csv(args.model, keep_default_na=False)
    model = model[model["dataset"] == PAPER_NAME].assign(input=lambda m: m["input"] if "input" in m else "")
    table = sbatch_table(planned_jobs(dry_run(wiki500k_config(args.related), Path(args.profile))), profile, model)
    limits = site_limits(profile_path.read_text())
    over = table[(table["cpus@1"] > limits.get("cpus_per_node", 1e9))
                 | (table[[f"mem_mb@{a}" for a in ATTEMPTS]].max(axis=1) > limits.get("mem_mb_per_node", 1e12))
                 | (table[[f"minutes@{a}" for a in ATTEMPTS]].max(axis=1) > limits.get("max_runtime_min", 1e12))]
    shown = table.assign(jobs=1) if args.jobs else per_rule(table)
    shown_path = profile_path.relative_to(ROOT) if profile_path.is_relative_to(ROOT) else profile_path
    print(f"config/paper.yaml, dataset {DATASET} only{' + XR-Transformer, APLC' if args.related else ''}: "
          f"{len(table)} jobs under {shown_path}"
          f" (site limits: {', '.join(f'{k}={v}' for k, v in limits.items())})\n")
    print(markdown(shown))
    if args.lines:
        print("\n" + "\n".join(f"{r['rule']}: {r['sbatch']}" for _, r in shown.iterrows()))
    largest = table.loc[table["mem_mb@1"].idxmax()]
    print(f"\nthe largest memory ask, {largest['rule']} ({largest['wildcards']}):\n  {largest['sbatch']}")
    if len(over):
        print(f"\n{len(over)} jobs above the site limits:\n" + over[["rule", "wildcards"]].to_string(index=False))
        sys.exit(1)


if __name__ == "__main__":
    main()
