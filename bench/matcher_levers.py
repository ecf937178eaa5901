#!/usr/bin/env python
"""Which matcher settings lift the transformer matcher's shortlist to the linear tree's, on
validation documents only? Through the workflow: config/eurlex57k-levers.yaml (a subset of
EURLEX57K's train and dev splits; its test split is never read) once per lever, each in its own
folder made of hard links to the first lever's, so only the matcher and what follows rerun.

    python -m bench.matcher_levers --override my-eurlex57k.yaml
    python -m bench.matcher_levers --override my-eurlex57k.yaml --levers paper,probe,probe@800,probe@1600

``my-eurlex57k.yaml`` names a local copy of the data (see config/eurlex57k.yaml), e.g.
``datasets: {eurlex57k-levers: {source: /data/EURLEX57K.tar.gz, sha256: <digest>}}``.
A lever is a name of LEVERS, optionally ``@steps`` (warm-up 10% of them: the steps curve), then
optionally ``:k<K>`` (the dataset's number of clusters), ``:b<top-b>`` (the shortlist), ``:w<tokens>``
(the encoder's window, ``max_length``: what prediction reads, and training too unless the lever sets
``train_max_length``) and ``:l<layers>`` (the pretrained encoder cut to its first layers, written
under --work: how recall grows with the encoder's depth, the one size axis an offline machine has):

    python -m bench.matcher_levers --override my-eurlex57k.yaml --out bench/results/matcher-k-b-steps-eurlex57k.csv \
        --levers probe-len64,probe-len64:b32,probe-len64:k128:b16,probe-len64:k64:b10,probe-len64@800,probe-len64@1600
    python -m bench.matcher_levers --override my-eurlex57k.yaml --out bench/results/matcher-window-eurlex57k.csv \
        --levers probe-len64:b32,probe-len64:b32:w256,probe-len64:b32:w512,probe-len128:b32:w256
    python -m bench.matcher_levers --override my-eurlex57k.yaml --out bench/results/matcher-xr-eurlex57k.csv \
        --levers xr-probe-len64-pecos:b32,xr-probe-len64:b32
    python -m bench.matcher_levers --override my-eurlex57k.yaml --out bench/results/matcher-depth-eurlex57k.csv \
        --levers probe-len64:b32,probe-len64:b32:l4,probe-len64:b32:l2
    python -m bench.matcher_levers --override my-eurlex57k.yaml --out bench/results/matcher-knn-eurlex57k.csv \
        --levers probe-len64:b32,probe-len64-knn:b32

The steps curve on the full data (config/eurlex57k-steps.yaml: config/eurlex57k.yaml's pifa-tfidf
slice; lever ``config`` is its matcher as it stands; dev/ is its validation split and test/ is not read):

    python -m bench.matcher_levers --configfile config/eurlex57k-steps.yaml --override my-eurlex57k.yaml \
        --out bench/results/matcher-steps-eurlex57k.csv --levers config@1600,config@3200

For each: the matcher's top-b label recall (the results table's ``shortlist_recall``) and its
ranker's P@1 on the validation split, beside the linear tree's at the same b, and the matcher's
training and prediction time. The figures of a subset's stand-in test split (dev documents too) are printed
for reference; a choice reads the validation columns. A config whose test split is the shipped test/
gets validation columns only.
"""
from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import yaml

from bench.common import ROOT, cpu, hardlinked_copy, merged_config, parser, read_results, snakemake_cmd, write_csv

# matcher settings over config/eurlex57k-levers.yaml's; "paper": the paper's random head as configured
LEVERS = {
    "config": {},  # the config file's matcher as it stands (config/eurlex57k-steps.yaml: the steps curve)
    "paper": {},
    "probe": {"head_init": "probe"},
    "probe-head-lr-1e-3": {"head_init": "probe", "head_learning_rate": 1.0e-3},
    "centroids": {"head_init": "centroids"},
    "probe-len64": {"head_init": "probe", "train_max_length": 64},
    "probe-len128": {"head_init": "probe", "train_max_length": 128},
    "len64": {"train_max_length": 64},
    # the coarse-to-fine schedule (XR-Transformer: levels 16, 64, 256, the same 400 steps in all), its
    # rankers' shortlist from the fine-tuned heads' beam search, or PECOS's (a linear tree over
    # [TF-IDF ; the fine-tuned embedding]); the row read is the XR model's
    "xr-probe-len64": {"head_init": "probe", "train_max_length": 64, "xr_transformer": {"shortlist": "neural"}},
    "xr-probe-len64-pecos": {"head_init": "probe", "train_max_length": 64, "xr_transformer": {"shortlist": "linear"}},
    # the same matcher, its shortlist voted by the nearest training documents in its fine-tuned
    # embedding (xmc/matcher/knn.py); the setting from a sweep over these runs' validation embeddings
    "probe-len64-knn": {"head_init": "probe", "train_max_length": 64,
                        "knn": {"k": 400, "power": 4, "head_weight": 0.1}},
}
MATCHER_MODEL = "pifa-tfidf.minilm.tfidf+neural.tfn+man.noop"
XR_MODEL = "pifa-tfidf.xr-transformer-minilm.tfidf+neural.tfn+man.noop"
LINEAR_MODEL = "pifa-tfidf.linear.tfidf.tfn+man.noop"


def parse_lever(spec: str) -> tuple[str, int | None, dict]:
    """``name[@steps][:k<K>][:b<top-b>][:w<tokens>][:l<layers>]`` -> (name, steps, {"k": K, "b": top-b,
    "w": tokens, "l": layers} as given)."""
    head, *extras = spec.split(":")
    name, _, steps = head.partition("@")
    if name not in LEVERS:
        raise SystemExit(f"--levers: unknown lever {name!r}; known: {sorted(LEVERS)}")
    if steps and not (steps.isdigit() and int(steps) > 0):
        raise SystemExit(f"--levers: {spec!r}: steps after @ must be a positive integer")
    sizes = {}
    for extra in extras:
        key, value = extra[:1], extra[1:]
        if key not in ("k", "b", "w", "l") or key in sizes or not (value.isdigit() and int(value) > 0):
            raise SystemExit(f"--levers: {spec!r}: after ':' give k<clusters>, b<top-b>, w<tokens> or l<layers>, "
                             "once each, e.g. :k128:b16")
        sizes[key] = int(value)
    return name, int(steps) if steps else None, sizes


def config_for(base: dict, spec: str, encoders_dir: Path = Path("encoders")) -> dict:
    """The run's config for lever ``spec``; an ``:l<layers>`` lever's cut encoder is named under
    ``encoders_dir`` (``<encoder>-l<layers>``; ``first_layers`` writes it)."""
    name, steps, sizes = parse_lever(spec)
    config = copy.deepcopy(base)  # key order kept: Snakemake compares params as written
    lever = dict(LEVERS[name])
    xr = lever.pop("xr_transformer", None)
    matcher = {**config["matcher"], **lever}
    if xr is not None:
        config["xr_transformer"] = {"encoders": list(config["matchers"]), "indexer": config["indexers"][0], **xr}
    if steps:
        matcher.update(max_steps=steps, warmup_steps=max(1, steps // 10))
    if "b" in sizes:
        matcher["top_b"] = sizes["b"]
    config["matcher"] = matcher
    if "k" in sizes:
        for dataset in config["datasets"].values():
            dataset["n_clusters"] = sizes["k"]
    if "w" in sizes:
        for encoder in config["matchers"]:
            config["encoders"][encoder]["max_length"] = sizes["w"]
    if "l" in sizes:
        for encoder in config["matchers"]:
            config["encoders"][encoder]["model"] = str(Path(encoders_dir).resolve() / f"{encoder}-l{sizes['l']}")
    return config


def first_layers(spec: str, n_layers: int, folder: Path) -> Path:
    """The pretrained encoder ``spec`` (a BERT-family model) cut to its first ``n_layers`` transformer
    layers, embeddings kept, saved with its tokenizer to ``folder``: a smaller encoder of the same
    pretraining, so that depth is the only thing that changes."""
    from transformers import AutoModel, AutoTokenizer

    from xmc.encoders import resolve_encoder

    source = resolve_encoder(spec)
    model = AutoModel.from_pretrained(source)
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        raise SystemExit(f"--levers :l<layers>: {spec!r} is a {model.config.model_type} model; only "
                         "BERT-family encoders (encoder.layer) can be cut")
    if not n_layers < len(layers):
        raise SystemExit(f"--levers :l{n_layers}: {spec!r} has {len(layers)} layers; cut it to fewer")
    model.encoder.layer = layers[:n_layers]
    model.config.num_hidden_layers = n_layers
    folder, part = Path(folder), Path(f"{folder}.part")  # a run stopped midway leaves no half folder to reuse
    shutil.rmtree(part, ignore_errors=True)
    model.save_pretrained(part, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(part)
    part.rename(folder)
    return folder


def carves_test(config: dict) -> bool:
    """Whether every dataset's test split is carved from its validation split (a study on the shipped
    test/ reads only its validation rows: nothing is chosen, or even looked at, on test documents)."""
    return all((ds.get("subsample") or {}).get("test_from") == "valid" for ds in config["datasets"].values())


def run(work: Path, config: dict, cores: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run(snakemake_cmd(work, work / "config.yaml", "--cores", str(cores)), check=True)


def row(work: Path, spec: str, config: dict) -> dict:
    tables = work / "results" / "tables"
    out = {"lever": spec, "steps": config["matcher"]["max_steps"], "top_b": config["matcher"]["top_b"],
           "K": next(iter(config["datasets"].values()))["n_clusters"],
           "window": config["encoders"][config["matchers"][0]]["max_length"],
           "layers": parse_lever(spec)[2].get("l", "all")}
    matcher = XR_MODEL if "xr_transformer" in config else MATCHER_MODEL
    splits = [("valid", "valid")] + ([("test", "held-out dev")] if carves_test(config) else [])
    for split, tag in splits:
        results = read_results(tables, split).set_index("model")
        for model, who in ((matcher, "matcher"), (LINEAR_MODEL, "linear")):
            out[f"{who} recall ({tag})"] = float(results.loc[model, "shortlist_recall"])
            out[f"{who} P@1 ({tag})"] = float(results.loc[model, "P@1"])
    timing = pd.read_csv(tables / "timing.csv")
    for step in ("train_matcher", "predict_matcher"):  # the lever's matcher: XR's own steps for an XR lever
        own = step.replace("_matcher", "_xr_matcher") if "xr_transformer" in config else step
        out[f"{step}_s"] = float(timing.loc[timing["step"] == own, "s"].sum())
    out["knn_shortlist_s"] = float(timing.loc[timing["step"] == "knn_shortlist", "s"].sum())  # 0: the head's
    return out


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--configfile", default=str(ROOT / "config" / "eurlex57k-levers.yaml"))
    p.add_argument("--override", action="append", default=[], help="a config file merged over it (e.g. the data's local copy)")
    p.add_argument("--levers", default="paper,probe,probe-head-lr-1e-3,centroids,probe-len64")
    p.add_argument("--work", default="/tmp/xmc-matcher-levers", help="run folders (outside the checkout; removed with --clean)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--clean", action="store_true", help="remove the run folders at the end")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "matcher-levers-eurlex57k.csv"))
    args = p.parse_args(argv)
    specs = args.levers.split(",")
    for spec in specs:
        parse_lever(spec)
    base = merged_config(args.configfile, *args.override)
    work, rows, first = Path(args.work), [], None
    for spec in specs:
        folder = work / spec.replace("@", "-at-").replace(":", "-")
        config = config_for(base, spec, work / "encoders")
        layers = parse_lever(spec)[2].get("l")
        for encoder in config["matchers"] if layers else ():
            cut = Path(config["encoders"][encoder]["model"])
            if not (cut / "config.json").is_file():
                first_layers(base["encoders"][encoder]["model"], layers, cut)
        if first is not None and not (folder / "results").exists():
            hardlinked_copy(first, folder)  # the shared stages (data, TF-IDF, embeddings; clusters at one K) are done
        run(folder, config, args.cores)
        first = first or folder
        rows.append(row(folder, spec, config))
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:,.2f}"), flush=True)
    table = pd.DataFrame(rows)
    print(f"{args.configfile}; CPU: {cpu()}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    write_csv(table, args.out, float_format="%.4g")
    if args.clean:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
