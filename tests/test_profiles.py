"""Workflow plans (dry runs only): the SLURM profile and sharded rankers."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")


def dry_run(*args, env=None):
    done = subprocess.run([SNAKEMAKE, "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def job_counts(out: str) -> dict:
    stats = out[out.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats.split("\n\n")[0], re.M)}


def test_slurm_profile_plans_the_grid_without_submitting(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")
    marker = tmp_path / "sbatch-called"
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("sbatch", "squeue", "sacct", "scancel", "sinfo"):
        (fake / tool).write_text(f"#!/bin/sh\necho {tool} >> {marker}\nexit 1\n")
        (fake / tool).chmod(0o755)
    out = dry_run("--profile", "profiles/slurm", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert not marker.exists()
    counts = job_counts(out)
    assert counts["train_matcher"] == 3 and counts["train_ranker"] == 4 and counts["all"] == 1
    matcher_job = out[out.index("rule train_matcher:"):].split("\n\n")[0]
    assert "slurm_partition=gpu" in matcher_job and "gpu=1" in matcher_job and "mem_mb=64000" in matcher_job


def test_ranker_shards_become_jobs_and_a_merge(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["ranker"]["shards"] = 3
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    counts = job_counts(dry_run("--configfile", str(path)))
    # 3 transformer rankers + the linear baseline's, 3 shards each, one merge each
    assert counts["train_ranker"] == 12 and counts["merge_ranker"] == 4 and counts["predict_ranker"] == 7
