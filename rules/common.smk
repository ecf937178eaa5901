import hashlib
import json
import re
from pathlib import Path

from snakemake.utils import validate

from xmc import config as xmc_config

R = "results"

validate(config, schema="../config/schema.yaml")
try:
    CFG = xmc_config.resolve(config)
    xmc_config.check_encoders(CFG)
    for _ds in CFG["datasets"]:  # K against the data, where a previous run has prepared it
        _meta = Path(f"{R}/{_ds}/prepared/meta.json")
        if _meta.is_file():
            xmc_config.check_n_clusters(CFG, _ds, json.loads(_meta.read_text())["n_labels"])
except xmc_config.ConfigError as err:
    raise ValueError(f"invalid configuration: {err}") from None

DATASETS = list(CFG["datasets"])


def _alternatives(values):
    return "|".join(re.escape(v) for v in values)


def code_version(*modules):
    """Digest of the xmc modules a stage depends on: Snakemake reruns a job when its params change,
    but it does not look inside an imported package."""
    h = hashlib.sha256()
    for module in modules:
        h.update((Path(workflow.basedir) / "xmc" / module).read_bytes())
    return h.hexdigest()[:16]


# ---- final targets -------------------------------------------------------------------------
def model_names():
    return [m.name for m in xmc_config.models(CFG)] + list(CFG["ensembles"])


def get_final_output():
    return [f"{R}/tables/results.csv", f"{R}/tables/results.md"] + all_bundles()


def all_metrics():
    return [f"{R}/{ds}/metrics/{name}.json" for ds in DATASETS for name in model_names()]


# ---- data ----------------------------------------------------------------------------------
def dataset_cfg(wildcards):
    return CFG["datasets"][wildcards.dataset]


def download_input(wildcards):
    """A local source is an input, so replacing the archive reruns everything downstream."""
    source = dataset_cfg(wildcards)["source"]
    return [] if re.match(r"^(https?|file)://", source) else [source]


def download_source(wildcards):
    return dataset_cfg(wildcards)["source"]


def download_sha256(wildcards):
    return dataset_cfg(wildcards).get("sha256")


def dataset_format(wildcards):
    return dataset_cfg(wildcards)["format"]


def dataset_encoding(wildcards):
    return dataset_cfg(wildcards).get("encoding", "utf-8")


# ---- encoders and matchers -----------------------------------------------------------------
def encoder_model(wildcards):
    return CFG["encoders"][wildcards.encoder]["model"]


def encoder_max_length(wildcards):
    return CFG["encoders"][wildcards.encoder].get("max_length", 128)


def text_emb_encoder_model(wildcards):
    return CFG["encoders"][CFG["text_emb"]["encoder"]]["model"]


def matcher_params(wildcards):
    return xmc_config.matcher_params(CFG, wildcards.dataset, wildcards.encoder)


def matcher_top_b(wildcards):
    return matcher_params(wildcards)["top_b"]


def baseline_top_b(wildcards):
    return CFG["matcher"]["top_b"]


def n_clusters(wildcards):
    return xmc_config.n_clusters(CFG, wildcards.dataset)


def pifa_neural_embeddings(wildcards):
    src = CFG["pifa_neural"]
    return f"{R}/{wildcards.dataset}/matcher/{src['indexer']}/{src['encoder']}/emb.train.npy"


def label_repr_path(wildcards):
    return f"{R}/{wildcards.dataset}/label_repr/{wildcards.indexer}.npz"


# ---- rankers -------------------------------------------------------------------------------
def ranker_features(wildcards):
    """TF-IDF always; the matcher's embeddings too for the tfidf+neural input."""
    ds, base = wildcards.dataset, f"{R}/{wildcards.dataset}/matcher/{wildcards.indexer}/{wildcards.matcher}"
    files = {
        "X_train": f"{R}/{ds}/tfidf/X.train.npz",
        "X_test": f"{R}/{ds}/tfidf/X.test.npz",
        "M_train": f"{base}/topb.train.npz",
        "M_test": f"{base}/topb.test.npz",
    }
    if wildcards.input == "tfidf+neural":
        if wildcards.matcher == xmc_config.LINEAR_MATCHER:
            raise ValueError("the linear matcher has no neural embeddings: use ranker input 'tfidf'")
        files["emb_train"] = f"{base}/emb.train.npy"
        files["emb_test"] = f"{base}/emb.test.npy"
    return files


def ranker_params():
    r = CFG["ranker"]
    return {"C": r["C"], "threshold": r["threshold"]}


# ---- ensembles -----------------------------------------------------------------------------
def ensemble_inputs(wildcards):
    return [f"{R}/{wildcards.dataset}/predictions/{m}.npz"
            for m in xmc_config.ensemble_members(CFG, wildcards.ensemble)]


def ensemble_method(wildcards):
    return CFG["ensembles"][wildcards.ensemble]["method"]


def ensemble_members(wildcards):
    return xmc_config.ensemble_members(CFG, wildcards.ensemble)


def model_description(wildcards):
    """Columns of the results table for one model or ensemble."""
    name = wildcards.model
    if name in CFG["ensembles"]:
        members = [xmc_config.Model.parse(m) for m in xmc_config.ensemble_members(CFG, name)]
        join = lambda attr: "+".join(dict.fromkeys(getattr(m, attr) for m in members))
        return {"indexer": join("indexer"), "matcher": join("matcher"), "ranker_input": join("input"),
                "negatives": join("negatives"), "combine": join("combine"),
                "ensemble": CFG["ensembles"][name]["method"]}
    m = xmc_config.Model.parse(name)
    return {"indexer": m.indexer, "matcher": m.matcher, "ranker_input": m.input,
            "negatives": m.negatives, "combine": m.combine, "ensemble": ""}


# ---- exported bundles ----------------------------------------------------------------------
def all_bundles():
    return [f"{R}/{ds}/models/{name}" for ds in DATASETS for name in model_names()]


def export_inputs(wildcards):
    """A model's trained parts, or an ensemble's member bundles; its metrics go in the manifest."""
    ds, name = wildcards.dataset, wildcards.model
    files = {"labels": f"{R}/{ds}/prepared/label_names.txt", "metrics": f"{R}/{ds}/metrics/{name}.json"}
    if name in CFG["ensembles"]:
        files["members"] = [f"{R}/{ds}/models/{m}" for m in xmc_config.ensemble_members(CFG, name)]
        return files
    m = xmc_config.Model.parse(name)
    base = f"{R}/{ds}/matcher/{m.indexer}/{m.matcher}"
    files.update({
        "vectorizer": f"{R}/{ds}/tfidf/vectorizer.pkl",
        "assignment": f"{R}/{ds}/indexer/{m.indexer}/C.npz",
        "matcher": f"{base}/model.npz" if m.matcher == xmc_config.LINEAR_MATCHER else f"{base}/model",
        "ranker": f"{R}/{ds}/ranker/{m.indexer}/{m.matcher}/{m.input}.{m.negatives}/model.npz",
    })
    return files


def export_settings(wildcards):
    """What the bundle needs to predict as the workflow did, and the config sections behind it."""
    ds, name = wildcards.dataset, wildcards.model
    top_k = CFG["ranker"]["top_k"]
    if name in CFG["ensembles"]:
        return {"kind": "ensemble", "method": CFG["ensembles"][name]["method"], "top_k": top_k,
                "config": {"ensemble": CFG["ensembles"][name], "seed": CFG["seed"]}}
    m = xmc_config.Model.parse(name)
    config = {"seed": CFG["seed"], "tfidf": CFG["tfidf"], "indexing": CFG["indexing"],
              "n_clusters": xmc_config.n_clusters(CFG, ds),
              "ranker": {"C": CFG["ranker"]["C"], "threshold": CFG["ranker"]["threshold"], "top_k": top_k}}
    if m.matcher == xmc_config.LINEAR_MATCHER:
        config["linear_baseline"] = CFG["linear_baseline"]
        top_b, max_length = CFG["matcher"]["top_b"], None
    else:
        config["encoder"] = CFG["encoders"][m.matcher]
        config["matcher"] = xmc_config.matcher_params(CFG, ds, m.matcher)
        top_b, max_length = config["matcher"]["top_b"], CFG["encoders"][m.matcher].get("max_length", 128)
    if m.indexer == "text-emb":
        config["text_emb"] = CFG["text_emb"]
    if m.indexer == "pifa-neural":
        config["pifa_neural"] = CFG["pifa_neural"]
    return {"kind": "model", "ranker_input": m.input, "combine": m.combine, "top_b": top_b, "top_k": top_k,
            "max_length": max_length, "config": config}
