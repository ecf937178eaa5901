"""The validation split in the workflow's plan: nothing trains on validation or test documents, and
the ensemble pick reads the validation split alone (the dry run's job inputs, every optional
system on)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # a Snakemake dry run

REPO = Path(__file__).resolve().parents[1]
SPLIT_FILE = re.compile(r"(^|[./])(valid|test)(\.|/)")  # prepared/test.txt, X.valid.npz, predictions/test/...


def dry_run_inputs(tmp_path: Path) -> list[tuple[str, list[str]]]:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["datasets"]["eurlex57k-sample"]["source"] = str(REPO / config["datasets"]["eurlex57k-sample"]["source"])
    config["linear_baseline"]["inputs"] = ["tfidf", "pre", "tfidf+fnt", "char", "tfidf+char"]
    config["xr_transformer"]["encoders"] = ["minilm"]
    config["aplc"]["encoders"] = ["minilm"]
    config["peers"] = {"systems": ["omikuji"]}
    config["matcher"]["head_init"] = "probe"  # the head's fit reads phi_pre: of train only
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(configfile), "--cores", "2"],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out.stdout):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m:
            inputs = re.search(r"^\s+input: (.*)$", block, re.M)
            jobs.append((m.group(1), inputs.group(1).split(", ") if inputs else []))
    return jobs


def test_training_reads_train_only_and_the_pick_reads_validation_only(tmp_path):
    jobs = dry_run_inputs(tmp_path)
    rules = {rule for rule, _ in jobs}
    assert {"select_ensemble", "train_matcher", "train_ranker", "train_xr_matcher", "train_aplc", "train_peer",
            "cluster", "label_repr_pifa_tfidf", "label_repr_pifa_neural", "train_linear_matcher"} <= rules
    for rule, inputs in jobs:
        if rule.startswith(("train_", "cluster", "label_repr_")):
            assert not [f for f in inputs if SPLIT_FILE.search(f)], (rule, inputs)
        if rule == "select_ensemble":
            assert inputs and all("/predictions/valid/" in f or f.endswith("/Y.valid.npz") for f in inputs), inputs
    # head_init: the matchers start from phi_pre of the training documents (the pretrained encoder pools by mean)
    matcher_inputs = [inputs for rule, inputs in jobs if rule == "train_matcher"]
    assert matcher_inputs and all(any(f.endswith("/pretrained/minilm/emb.train.npy") for f in inputs)
                                  for inputs in matcher_inputs), matcher_inputs
    # every model and ensemble is scored on both splits
    evaluated = [i for rule, inputs in jobs if rule == "evaluate" for i in inputs if "/prepared/Y." in i]
    assert {f.rsplit("/", 1)[-1] for f in evaluated} == {"Y.valid.npz", "Y.test.npz"}
    assert evaluated.count(evaluated[0]) == len(evaluated) // 2
