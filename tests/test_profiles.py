"""Workflow plans (dry runs only, in temporary folders): the SLURM profile's sbatch lines, GPU job
threads on a workstation, and sharded rankers."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import pandas as pd
import yaml

pytestmark = pytest.mark.slow  # Snakemake runs and plans: pytest -m 'not slow' skips them

ROOT = Path(__file__).resolve().parents[1]
from bench.memory_model import is_dense_input, profile_value, site_limits  # noqa: E402  (Snakemake's own evaluator of a profile's resources)
# the SLURM executor plugin's own sbatch builder, a dry run's jobs, Wiki-500K input sizes
from bench.sbatch_plan import input_mib, planned_jobs, sbatch_line, shards_of, split_docs, wildcard  # noqa: E402
SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
SAMPLE = ROOT / "data" / "eurlex57k-sample" / "eurlex57k-sample.tar.gz"


def dry_run(workdir: Path, *args, env=None) -> str:
    """Plan in ``workdir`` (never the checkout: a previous run's results/ would change the plan)."""
    done = subprocess.run([SNAKEMAKE, "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args],
                          cwd=workdir, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def job_counts(out: str) -> dict:
    stats = out[out.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats.split("\n\n")[0], re.M)}


@pytest.fixture(scope="module")
def paper_with_related(tmp_path_factory):
    """config/paper.yaml with XR-Transformer and APLC switched on."""
    root = tmp_path_factory.mktemp("paper")
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    config["xr_transformer"] = {**config.get("xr_transformer", {}), "encoders": ["bert-large"]}
    config["aplc"] = {**config.get("aplc", {}), "encoders": ["xlnet-large"]}
    path = root / "paper-related.yaml"
    path.write_text(yaml.safe_dump(config))
    return root, path


GPU_RULES = {"train_matcher", "predict_matcher", "train_xr_matcher", "predict_xr_matcher", "train_aplc",
             "predict_aplc", "embed_pretrained", "label_repr_text_emb"}
TRAINING_RULES = {"train_matcher", "train_xr_matcher", "train_aplc"}  # resources.matcher_gpus each


def test_slurm_profile_puts_every_gpu_job_on_the_gpu_partition(paper_with_related):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[slurm]'")
    root, configfile = paper_with_related
    marker = root / "sbatch-called"
    fake = root / "bin"
    fake.mkdir(exist_ok=True)
    for tool in ("sbatch", "squeue", "sacct", "scancel", "sinfo"):
        (fake / tool).write_text(f"#!/bin/sh\necho {tool} >> {marker}\nexit 1\n")
        (fake / tool).chmod(0o755)
    work = root / "slurm"
    work.mkdir()
    out = dry_run(work, "--workflow-profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(configfile),
                  env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert not marker.exists()  # a dry run submits nothing
    assert "set-threads asks for more threads" not in out
    jobs = planned_jobs(out)
    assert len(jobs) == job_counts(out)["total"]
    gpu_rules_seen = set()
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    for job in jobs:
        # memory and time are expressions of input.size_mb: in a plan whose inputs do not exist yet
        # Snakemake shows them as <TBD> and evaluates them at submission; here at 1 GiB of inputs
        ours = profile["set-resources"].get(job.rule, {})
        for key, value in job.resources.items():
            if value == "<TBD>" and key in ours:
                assert "input.size_mb" in ours[key], (job.rule, key)
                job.resources[key] = profile_value(profile, job.rule, key, 1024.0, shards=shards_of(job),
                                                   input_name=wildcard(job, "input"))
            elif value == "<TBD>":  # Snakemake's own defaults of the input size (disk_mb, mem_mib, ...)
                job.resources[key] = 1024
        line = sbatch_line(job)
        cpus = int(re.search(r"--cpus-per-task=(\d+)", line).group(1))
        assert cpus == job.threads <= 32, (job.rule, line)  # the CPUs it asks for are the threads it runs
        assert re.search(r"--mem \d+", line) and re.search(r" -t \d+", line), line
        if job.resources.get("gpu", 0) > 0:
            gpu_rules_seen.add(job.rule)
            assert " -p gpu" in line and f"--gpus={job.resources['gpu']}" in line, (job.rule, line)
            assert "--nodes=1" in line, (job.rule, line)  # torchrun spans one machine
        else:
            assert " -p cpu" in line and "--gpus" not in line and "--gres" not in line, (job.rule, line)
    # every rule that runs a transformer asked for a GPU (paper.yaml trains on 4 per matcher)
    assert gpu_rules_seen == GPU_RULES
    assert {job.resources["gpu"] for job in jobs if job.rule in TRAINING_RULES} == {4}
    assert {job.resources["gpu"] for job in jobs if job.rule in GPU_RULES - TRAINING_RULES} == {1}


def test_slurm_profile_with_the_default_workflow_profile_warns_of_the_thread_cap(tmp_path, paper_with_related):
    """`--profile profiles/slurm` merges profiles/default (cores: all) on top: said, not silent."""
    _, configfile = paper_with_related
    out = dry_run(tmp_path, "--profile", str(ROOT / "profiles" / "slurm"), "--workflow-profile",
                  str(ROOT / "profiles" / "default"), "--configfile", str(configfile), "--cores", "2")
    assert "set-threads asks for more threads than --cores 2 allows" in out
    assert "--workflow-profile profiles/slurm" in out


def test_gpu_jobs_share_the_cores_of_a_workstation(tmp_path, paper_with_related):
    """--cores 8 --resources gpu=4: a one-GPU job gets 2 threads (4 fit at once), a training job
    with matcher_gpus 4 gets all 8; without --resources gpu (a CPU run) every job gets all cores."""
    _, configfile = paper_with_related
    jobs = planned_jobs(dry_run(tmp_path, "--configfile", str(configfile), "--cores", "8",
                                "--resources", "gpu=4"))
    threads = {(j.rule, j.threads, j.resources.get("gpu")) for j in jobs if j.rule in GPU_RULES}
    assert threads == {(r, 2, 1) for r in GPU_RULES - TRAINING_RULES} | {(r, 8, 4) for r in TRAINING_RULES}
    # a config setting instead of the share
    config = yaml.safe_load(configfile.read_text())
    config["resources"]["threads_per_gpu"] = 3
    path = tmp_path / "threads.yaml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "b").mkdir()
    jobs = planned_jobs(dry_run(tmp_path / "b", "--configfile", str(path), "--cores", "8", "--resources", "gpu=4"))
    assert {j.threads for j in jobs if j.rule == "predict_matcher"} == {3}
    assert {j.threads for j in jobs if j.rule == "train_matcher"} == {8}  # 3 x 4, capped at --cores


def test_ranker_shards_become_jobs_and_a_merge(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["ranker"]["shards"] = 3
    for spec in config["datasets"].values():
        spec["source"] = str(SAMPLE)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = dry_run(tmp_path, "--configfile", str(path), "--cores", "2")
    counts = job_counts(out)
    # 3 transformer rankers + the linear baseline's, 3 shards each, one merge each
    assert counts["train_ranker"] == 12 and counts["merge_ranker"] == 4
    assert counts["predict_ranker"] == 7 * 2  # the validation and the test split
    # the shard count is a wildcard of every shard's job: what profiles/slurm sizes its memory by
    assert {shards_of(j) for j in planned_jobs(out) if j.rule == "train_ranker"} == {3}


def test_the_site_settings_the_docs_show_are_accepted_by_the_plugin():
    """docs/gpus-and-slurm.md: `gpu_model`, `qos` and a `slurm_extra` flag the plugin does not manage
    go through; `--qos` inside slurm_extra is refused by the pinned plugin, as the docs say."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[slurm]'")
    from snakemake_interface_common.exceptions import WorkflowError

    docs = (ROOT / "docs" / "gpus-and-slurm.md").read_text()
    assert "`gpu_model: a100`" in docs and "`qos: long`" in docs and """slurm_extra: "'--mail-type=FAIL'\"""" in docs
    job = SimpleNamespace(rule="train_matcher", threads=8, resources={
        "slurm_partition": "gpu", "gpu": 2, "gpu_model": "a100", "nodes": 1, "mem_mb": 64000, "runtime": 1440,
        "qos": "long", "slurm_extra": "--mail-type=FAIL"})
    line = sbatch_line(job)
    for flag in ("-p gpu", "--gpus=a100:2", "--qos=long", "--mail-type=FAIL", "--nodes=1", "--cpus-per-task=8"):
        assert flag in line, (flag, line)
    job.resources["slurm_extra"] = "--qos=long"  # the example the README used to give
    with pytest.raises(WorkflowError, match="quality-of-service option is not allowed"):
        sbatch_line(job)


def test_slurm_profile_sizes_jobs_by_their_inputs_and_ranker_shards():
    """profiles/slurm asks for memory and time that grow with a job's input MiB and with `attempt`;
    a ranker shard asks for less than the unsharded ranker, but more than 1/S of it (every shard
    reads the whole input); the GPU rules keep fixed figures."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    mem = lambda rule, mb, **kw: profile_value(profile, rule, "mem_mb", mb, **kw)
    for rule in ("tfidf", "label_repr_pifa_tfidf", "cluster", "train_linear_matcher",
                 "predict_linear_matcher", "train_ranker", "predict_ranker"):
        assert mem(rule, 50_000) > mem(rule, 5_000) >= 2000, rule
        assert mem(rule, 5_000, attempt=2) == 2 * mem(rule, 5_000), rule
        assert profile_value(profile, rule, "runtime", 50_000) > profile_value(profile, rule, "runtime", 5), rule
    whole, shard = mem("train_ranker", 20_000), mem("train_ranker", 20_000, shards=8)
    assert whole / 8 < shard < whole
    assert mem("train_matcher", 10) == mem("train_matcher", 10_000)  # host memory of a GPU job: fixed


def test_slurm_profile_covers_every_job_the_scaling_benchmark_measured(tmp_path):
    """python -m bench.memory_model --check: no job of bench/results/scale_stages.csv (exact peaks, 2-core
    times) used more memory or time than profiles/slurm would ask for; a profile that asks for
    too little is caught."""
    check = lambda profile: subprocess.run([sys.executable, "-m", "bench.memory_model", "--check", str(profile)],
                                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    done = check(ROOT / "profiles" / "slurm" / "config.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    profile["set-resources"]["train_ranker"]["mem_mb"] = "int(0.5 * input.size_mb * attempt)"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(profile))
    done = check(tmp_path / "config.yaml")
    assert done.returncode == 1 and "train_ranker at 500000 labels" in done.stdout, done.stdout + done.stderr


@pytest.fixture(scope="module")
def paper_everything(tmp_path_factory, paper_with_related):
    """config/paper.yaml with every optional system on: XR-Transformer, APLC, a peer (omikuji, from the
    test environment) and the character n-gram linear models."""
    root, path = paper_with_related
    config = yaml.safe_load(path.read_text())
    config["peers"] = {"systems": ["omikuji"], "python": None}
    config["linear_baseline"]["inputs"] = list(config["linear_baseline"]["inputs"]) + ["char", "tfidf+char"]
    out = root / "paper-everything.yaml"
    out.write_text(yaml.safe_dump(config))
    return root, out


def test_every_sbatch_line_of_the_full_paper_grid_fits_the_site(paper_everything):
    """Every job of the paper grid with every optional system on, through the plugin's own sbatch
    builder, on each of its three attempts: CPUs, memory and time within the documented site limits
    (before: train_peer/predict_peer asked for 512 CPUs, retries for 48 h and 72 h), at 1 GiB of
    input and, for Wiki-500K's jobs, at their estimated Wiki-500K inputs (python -m bench.sbatch_plan;
    before the memory model's lines were capped, train_peer's third attempt there asked 546,225 MB)."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[slurm]'")
    root, configfile = paper_everything
    profile_path = ROOT / "profiles" / "slurm" / "config.yaml"
    limits = site_limits(profile_path.read_text())
    assert set(limits) == {"cpus_per_node", "mem_mb_per_node", "max_runtime_min"}, limits
    profile = yaml.safe_load(profile_path.read_text())
    model = pd.read_csv(ROOT / "bench" / "results" / "memory_model_paper.csv", keep_default_na=False)
    model = model[model["dataset"] == "Wiki-500K"]
    docs = split_docs()
    work = root / "everything"
    work.mkdir()
    out = dry_run(work, "--workflow-profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(configfile))
    jobs = planned_jobs(out)
    rules = {job.rule for job in jobs}
    assert {"train_peer", "predict_peer", "train_xr_matcher", "train_aplc", "tfidf_char",
            "predict_linear_matcher_features", "predict_xr_shortlist", "label_repr_pifa_neural"} <= rules
    summary, largest, kinds = {}, {}, {}
    for job in jobs:
        kinds.setdefault(job.rule, set()).add(is_dense_input(wildcard(job, "input")))
        # every job at 1 GiB of input; Wiki-500K's also at the input it would have there
        sizes = [1024.0] + ([input_mib(job, model, docs)[0]] if wildcard(job, "dataset") == "wiki-500k" else [])
        for attempt, size in ((a, size) for a in (1, 2, 3) for size in sizes):
            resources = dict(job.resources)
            for key in ("mem_mb", "runtime"):  # as Snakemake evaluates them at submission of this attempt
                resources[key] = profile_value(profile, job.rule, key, size, attempt=attempt, shards=shards_of(job),
                                               input_name=wildcard(job, "input"))
            resources = {k: (1024 if v == "<TBD>" else v) for k, v in resources.items()}
            line = sbatch_line(SimpleNamespace(rule=job.rule, threads=job.threads, resources=resources))
            cpus = int(re.search(r"--cpus-per-task=(\d+)", line).group(1))
            mem = int(re.search(r"--mem (\d+)", line).group(1))
            minutes = int(re.search(r" -t (\d+)", line).group(1))
            assert cpus <= limits["cpus_per_node"], (job.rule, attempt, line)
            assert mem <= limits["mem_mb_per_node"], (job.rule, attempt, line)
            assert minutes <= limits["max_runtime_min"], (job.rule, attempt, line)
            if size == 1024.0:
                summary.setdefault(job.rule, set()).add((attempt, cpus, mem, minutes))
            else:
                largest[job.rule] = max(largest.get(job.rule, 0), mem)
    # every rule of the plan has its own memory figure or the default, none is left to Snakemake's own
    # one figure per attempt, per rule (a rule whose profile line reads the `input` wildcard: per
    # input kind, sparse or with embeddings)
    by_input = {rule for rule, r in profile["set-resources"].items() if "wildcards.get('input'" in str(r.get("mem_mb", ""))}
    assert by_input == {"train_ranker", "predict_ranker"}
    assert all(len(v) == 3 * (len(kinds[rule]) if rule in by_input else 1) for rule, v in summary.items()), summary
    assert len(kinds["predict_ranker"]) == 2 and len(summary["predict_ranker"]) == 6
    # Wiki-500K's inputs were sized (the memory model's rules ask for more there than at 1 GiB)
    for rule in ("train_ranker", "predict_ranker", "cluster", "label_repr_pifa_neural"):
        assert largest[rule] > max(m for a, _, m, _ in summary[rule] if a == 3), (rule, largest)
    for rule in ("train_peer", "predict_peer"):
        assert {c for _, c, _, _ in summary[rule]} == {16}
    print("\n".join(f"{rule}: " + "; ".join(f"attempt {a}: {c} CPUs, {m} MB, {t} min" for a, c, m, t in sorted(v))
                    for rule, v in sorted(summary.items())))


def test_small_cpu_rules_are_grouped_into_few_sbatch_jobs(tmp_path, paper_with_related):
    """profiles/slurm groups evaluate and ensemble jobs ten components to an sbatch job (an ensemble
    and its evaluate are one component): paper.yaml's 180 such jobs become ~18 (before: 180)."""
    _, configfile = paper_with_related
    out = dry_run(tmp_path, "--workflow-profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(configfile))
    counts = job_counts(out)
    groups = []  # per sbatch job: how many jobs of each rule
    for line in out.splitlines():
        if "Group job small-cpu" in line:
            groups.append({})
        elif groups and (rule := re.match(r"^    (?:local)?rule (\w+):", line)):
            groups[-1][rule.group(1)] = groups[-1].get(rule.group(1), 0) + 1
    members = sum(sum(g.values()) for g in groups)
    assert set().union(*groups) == {"evaluate", "ensemble"} and members == counts["evaluate"] + counts["ensemble"]
    # a component is one evaluate job, with the ensemble job it scores if any: at most ten per sbatch
    # job (which components share one depends on Snakemake's set order, i.e. the hash seed)
    assert all(g.get("ensemble", 0) <= g["evaluate"] <= 10 for g in groups), groups
    assert len(groups) <= members / 8, groups
