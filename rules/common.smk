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
    return [m.name for m in xmc_config.models(CFG)] + xmc_config.aplc_models(CFG) + list(CFG["ensembles"])


def get_final_output():
    return [f"{R}/tables/results.csv", f"{R}/tables/results.md"]


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
        members = [xmc_config.describe_model(CFG, m) for m in xmc_config.ensemble_members(CFG, name)]
        join = lambda attr: "+".join(dict.fromkeys(v for m in members if (v := getattr(m, attr))))
        return {"indexer": join("indexer"), "matcher": join("matcher"), "ranker_input": join("input"),
                "negatives": join("negatives"), "combine": join("combine"),
                "ensemble": CFG["ensembles"][name]["method"]}
    m = xmc_config.describe_model(CFG, name)
    return {"indexer": m.indexer, "matcher": m.matcher, "ranker_input": m.input,
            "negatives": m.negatives, "combine": m.combine, "ensemble": ""}


# ---- related systems (rules/related.smk) ---------------------------------------------------
def aplc_params(wildcards):
    return xmc_config.aplc_params(CFG, wildcards.dataset, wildcards.encoder)
