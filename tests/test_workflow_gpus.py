"""The GPU paths of the workflow on a CPU machine: pretend devices (XMC_GPU_DEVICES) stand for GPUs,
gloo for NCCL. Snakemake runs the rules for real on a tiny slice of the embedded sample."""
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from test_workflow import SAMPLE, write_attentionxml
from tiny_models import make_tiny_encoder
from xmc.data.download import fetch
from xmc.data.readers import read_eurlex57k
from xmc.matcher.launch import train_from_files
from xmc.matcher.transformer import TransformerMatcher

pytestmark = pytest.mark.slow  # Snakemake runs and plans: pytest -m 'not slow' skips them

REPO = Path(__file__).resolve().parents[1]


def run(workdir: Path, config: dict, targets: list[str], *args: str, devices: str) -> subprocess.CompletedProcess:
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    (workdir / "tmp").mkdir(exist_ok=True)
    # pretend devices: locks of their own, not the host's (other test runs use pretend "0" and "1" too);
    # a temporary directory of its own, to see what the run leaves there
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "XMC_GPU_DEVICES": devices,
           "PYTHONPATH": str(REPO), "XMC_GPU_LOCK_DIR": str(workdir / "gpu-slots"), "TMPDIR": str(workdir / "tmp")}
    # targets first: --configfile and --resources take several values
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpus")
    return root, make_tiny(root)


def make_tiny(root: Path) -> dict:
    """A 160-document slice, two copies of a tiny BERT without dropout (ranks would draw other masks),
    and a config that trains a matcher per encoder (also used by bench/gpu_jobs.py)."""
    raw = root / "sample"
    fetch(str(SAMPLE), raw)
    write_attentionxml(read_eurlex57k(raw), root / "tiny-data", n_train=120, n_test=40)
    encoder = make_tiny_encoder("bert", root / "tiny-bert")
    cfg = json.loads((encoder / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (encoder / "config.json").write_text(json.dumps(cfg))
    shutil.copytree(encoder, root / "tiny-bert-b")
    config = {
        "seed": 0,
        "datasets": {"tiny": {"source": str(root / "tiny-data"), "format": "attentionxml"}},
        "encoders": {name: {"model": str(root / name), "max_length": 32} for name in ("tiny-bert", "tiny-bert-b")},
        "matchers": ["tiny-bert", "tiny-bert-b"],
        "indexers": ["pifa-tfidf"],
        "tfidf": {"min_df": 1, "max_features": 20000},
        "indexing": {"n_clusters": 8},
        "text_emb": {"encoder": "tiny-bert", "max_length": 16},
        "pifa_neural": {"indexer": "pifa-tfidf", "encoder": "tiny-bert"},
        "matcher": {"max_steps": 8, "warmup_steps": 1, "batch_size": 4, "grad_accum": 3, "learning_rate": 1e-3,
                    "head_learning_rate": 1e-2, "dropout": 0.0, "top_b": 3, "log_every": 1, "device": "cpu",
                    "checkpoint_every": 0},
        "ranker": {"inputs": ["tfidf"], "negatives": ["tfn"], "combine": ["noop"]},
        "ensembles": {},
        "linear_baseline": {"enabled": False},
    }
    return config


def _times(log: Path) -> tuple[datetime, datetime]:
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", log.read_text(), re.M)
    parse = lambda s: datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f")
    return parse(stamps[0]), parse(stamps[-1])


def test_two_single_gpu_jobs_run_at_once_on_their_own_devices(tiny):
    """--cores 2 --resources gpu=2 with two pretend devices: both matchers train at the same time,
    each on its own device (read from the job logs). Before, each asked for every core and they ran
    one after the other."""
    root, config = tiny
    work = root / "two-jobs"
    work.mkdir()
    targets = [f"results/tiny/matcher/pifa-tfidf/{e}/model" for e in config["matchers"]]
    run(work, config, targets, "--cores", "2", "--resources", "gpu=2", devices="0,1")
    logs = [work / f"results/logs/tiny/train_matcher.pifa-tfidf.{e}.log" for e in config["matchers"]]
    devices = [re.search(r"train_matcher: GPU\(s\) (\S+) assigned", log.read_text()).group(1) for log in logs]
    assert sorted(devices) == ["0", "1"]
    (start_a, end_a), (start_b, end_b) = map(_times, logs)
    assert max(start_a, start_b) < min(end_a, end_b), "the two GPU jobs did not overlap"


def test_rule_level_torchrun_matches_one_process(tiny):
    """matcher_gpus: 2 on two pretend devices: train_matcher runs torchrun (2 gloo processes) and
    gives the head of one process with the same total batch (each step's rows dealt out to the ranks)."""
    root, config = tiny
    config = {**config, "matchers": ["tiny-bert"], "resources": {"matcher_gpus": 2}}
    work = root / "ddp"
    work.mkdir()
    target = "results/tiny/matcher/pifa-tfidf/tiny-bert/model"
    run(work, config, [target], "--cores", "2", "--resources", "gpu=2", devices="0,1")
    log = (work / "results/logs/tiny/train_matcher.pifa-tfidf.tiny-bert.log").read_text()
    assert re.search(r"train_matcher: GPU\(s\) (0,1|1,0) assigned", log)
    assert "torch.distributed.run --standalone --nproc_per_node=2" in log
    assert "data-parallel over 2 processes" in log
    assert not list((work / "tmp").glob("torch*")), "torchrun's rank files were left in the temporary directory"
    ddp = TransformerMatcher.load(work / target, device="cpu")

    res = work / "results" / "tiny"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train_from_files(root / "tiny-bert", res / "tokens/tiny-bert/train.npz", res / "prepared/Y.train.npz",
                                  res / "indexer/pifa-tfidf/C.npz", ddp.params.to_dict())
    finally:
        torch.set_num_threads(threads)
    assert [h["step"] for h in ddp.history_] == list(range(1, 9))
    np.testing.assert_allclose([h["loss"] for h in ddp.history_], [h["loss"] for h in single.history_], rtol=1e-4)
    assert not np.allclose(ddp.head.weight.detach().numpy(), 0)
    np.testing.assert_allclose(ddp.head.weight.detach().numpy(), single.head.weight.detach().numpy(), atol=1e-4)


def test_no_gpu_is_said_once_per_run(tiny):
    """A machine without GPUs: the two training jobs each log that they run on the CPU, and the
    console shows the warning once for the run (before: once per transformer job)."""
    root, config = tiny
    work = root / "no-gpu"
    work.mkdir()
    targets = [f"results/tiny/matcher/pifa-tfidf/{e}/model" for e in config["matchers"]]
    done = run(work, config, targets, "--cores", "2", devices="")
    console = done.stdout + done.stderr
    assert console.count("asked for 1 GPU(s) but none is visible") == 1, console[-3000:]
    logs = [work / f"results/logs/tiny/train_matcher.pifa-tfidf.{e}.log" for e in config["matchers"]]
    assert all("but none is visible on this machine" in log.read_text() for log in logs)
