import functools
import json
import re
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

from xmc import code_digest as xmc_code_digest
from xmc import config as xmc_config
from xmc import devices as xmc_devices
from xmc import paper as xmc_paper

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


@functools.cache
def code_version(script):
    """Digest of a workflow script and every xmc module it runs, transitively (xmc.code_digest):
    Snakemake reruns a job when its params change, but it does not look inside an imported package."""
    base = Path(workflow.basedir)
    return xmc_code_digest.digest(base / "workflow_scripts" / script, base / "xmc")


# ---- GPUs ----------------------------------------------------------------------------------
# Every rule that runs a transformer declares `gpu` and takes its devices from xmc.devices.assign_gpus.
MATCHER_GPUS = CFG["resources"]["matcher_gpus"]  # train_matcher: data-parallel over these
ONE_GPU = min(1, MATCHER_GPUS)  # inference, text-emb, phi_pre, XR-Transformer, APLC: one device


def _check_thread_cap():
    """A profile's set-threads above --cores is cut silently by Snakemake, and under SLURM the job then
    asks for fewer CPUs than the profile says: the usual cause is profiles/default's `cores: all`
    merged on top of profiles/slurm's."""
    capped = {rule: getattr(n, "value", n) for rule, n in workflow.resource_settings.overwrite_threads.items()
              if isinstance(getattr(n, "value", n), int) and getattr(n, "value", n) > workflow.cores}
    if capped:
        logger.warning(f"set-threads asks for more threads than --cores {workflow.cores} allows, so "
                       f"Snakemake cuts them to {workflow.cores}: {capped}. With profiles/slurm, run "
                       f"`snakemake --workflow-profile profiles/slurm` (with --profile, profiles/default's "
                       f"`cores: all` is merged on top and caps every job at this machine's cores).")


if not workflow.remote_exec:  # a job step re-reads the workflow with its own --cores
    _check_thread_cap()


def gpu_threads(gpus):
    """Threads of a job holding `gpus` GPUs: its share of --cores under --resources gpu=G, so that
    GPU jobs run side by side (a job asking for every core would run alone)."""
    total = workflow.global_resources.get("gpu")
    return xmc_devices.threads_per_gpu_job(workflow.cores, getattr(total, "value", total), gpus,
                                           CFG["resources"]["threads_per_gpu"])


# ---- final targets -------------------------------------------------------------------------
def model_names():
    return [m.name for m in xmc_config.models(CFG)] + xmc_config.aplc_models(CFG) + list(CFG["ensembles"])


def get_final_output():
    return [f"{R}/tables/results.csv", f"{R}/tables/results.md"] + report_outputs() + all_bundles()


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


def dataset_subsample(wildcards):
    return dataset_cfg(wildcards).get("subsample") or {}


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
def feature_files(dataset, indexer, matcher, input):
    """X_{train,test} (TF-IDF) and/or emb_{train,test} (dense) files of a ranker input; the linear
    baselines' matcher reads the same features as their rankers."""
    files = {}

    def tfidf():
        files.update(X_train=f"{R}/{dataset}/tfidf/X.train.npz", X_test=f"{R}/{dataset}/tfidf/X.test.npz")

    def emb(folder):
        files.update(emb_train=f"{folder}/emb.train.npy", emb_test=f"{folder}/emb.test.npy")

    if input == "tfidf":
        tfidf()
    elif input == "tfidf+neural":
        if matcher == xmc_config.LINEAR_MATCHER:
            raise ValueError("the linear matcher has no neural embeddings: use ranker input 'tfidf'")
        tfidf()
        emb(f"{R}/{dataset}/matcher/{indexer}/{matcher}")
    else:
        kind, encoder = xmc_config.parse_linear_input(input)
        if matcher != xmc_config.LINEAR_MATCHER:
            raise ValueError(f"ranker input {input!r} belongs to the linear baselines (matcher 'linear')")
        if kind == "pre":
            emb(f"{R}/{dataset}/pretrained/{encoder}")
        else:  # tfidf+fnt: the fine-tuned matcher of the same indexer
            tfidf()
            emb(f"{R}/{dataset}/matcher/{indexer}/{encoder}")
    return files


def matcher_dir(dataset, indexer, matcher, input):
    """A transformer matcher's folder; the linear matcher's is `linear` on TF-IDF, `linear.{input}`
    on the other baseline features."""
    if matcher == xmc_config.LINEAR_MATCHER and input != "tfidf":
        return f"{R}/{dataset}/matcher/{indexer}/linear.{input}"
    return f"{R}/{dataset}/matcher/{indexer}/{matcher}"


def ranker_features(wildcards):
    """Features of the ranker input plus the matcher's top-b clusters of both splits."""
    w = wildcards
    base = matcher_dir(w.dataset, w.indexer, w.matcher, w.input)
    files = feature_files(w.dataset, w.indexer, w.matcher, w.input)
    if xmc_config.uses_xr_shortlist(CFG, w.matcher):  # PECOS's concat linear tree picks the clusters
        base = f"{base}/shortlist"
    files.update(M_train=f"{base}/topb.train.npz", M_test=f"{base}/topb.test.npz")
    return files


def linear_matcher_features(wildcards):
    """Features of a linear baseline's matcher (the same as its rankers')."""
    return feature_files(wildcards.dataset, wildcards.indexer, xmc_config.LINEAR_MATCHER, wildcards.input)


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


# ---- tables, figures, timing (rules/evaluate.smk, rules/report.smk) ------------------------
def report_outputs():
    """The paper-layout tables, the stage timing and every figure (PNG + PDF)."""
    tables = [f"{R}/tables/{name}.{ext}" for name in ("table3", "table5") for ext in ("md", "csv", "tex", "html")]
    timing = [f"{R}/tables/timing.{ext}" for ext in ("md", "csv", "html")] + [f"{R}/tables/timing_steps.csv"]
    figures = [f"{R}/figures/{ds}/{name}.{ext}" for ds in DATASETS
               for name in ("label_frequency", "cluster_sizes", "precision_at_k") for ext in ("png", "pdf")]
    return tables + timing + figures


def table3_methods():
    """Table 3 row label -> model or ensemble of the grid (None: not in it)."""
    return xmc_paper.table3_models(CFG)


def paper_datasets():
    """Our dataset -> the paper dataset whose figures the tables print beside it, where the config
    names one (`datasets.<name>.paper_dataset`); xmc.tables matches the others by name."""
    return {ds: spec["paper_dataset"] for ds, spec in CFG["datasets"].items() if "paper_dataset" in spec}


def table5_ids():
    """Table 5 configuration id -> model or ensemble of the grid (None: not in it)."""
    return xmc_paper.table5_models(CFG)


def dataset_metrics(wildcards):
    return [f"{R}/{wildcards.dataset}/metrics/{name}.json" for name in model_names()]


def figure_model_labels():
    """Axis labels of the P@k figure: a model that is a Table 5 configuration carries its id."""
    ids = {}
    for i, name in table5_ids().items():
        if name:
            ids.setdefault(name, []).append(str(i))
    return {name: f"[{','.join(i)}] {name}" for name, i in ids.items()}


def cluster_assignments(wildcards):
    """C.npz of every indexer, in the order of CFG["indexers"]."""
    return [f"{R}/{wildcards.dataset}/indexer/{ix}/C.npz" for ix in CFG["indexers"]]


# ---- related systems (rules/related.smk) ---------------------------------------------------
def aplc_params(wildcards):
    return xmc_config.aplc_params(CFG, wildcards.dataset, wildcards.encoder)


# ---- exported bundles ----------------------------------------------------------------------
def all_bundles():
    """Every model and ensemble but those a bundle cannot hold yet: APLC's end-to-end models, and the
    linear matchers over encoder features, i.e. the baselines on phi_pre / phi_fnt and XR-Transformer's
    linear shortlist (a bundle would need the encoder beside the linear matcher)."""
    skip = set(xmc_config.aplc_models(CFG)) | {
        m.name for m in xmc_config.baseline_models(CFG) if m.input != "tfidf"} | {
        m.name for m in xmc_config.xr_models(CFG) if xmc_config.uses_xr_shortlist(CFG, m.matcher)}
    return [f"{R}/{ds}/models/{name}" for ds in DATASETS for name in model_names()
            if name not in skip and not set(_ensemble_members_or_empty(name)) & skip]


def _ensemble_members_or_empty(name):
    return xmc_config.ensemble_members(CFG, name) if name in CFG["ensembles"] else []


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
        encoder = m.matcher.removeprefix(xmc_config.XR_MATCHER_PREFIX)  # an XR matcher fine-tunes its encoder
        config["encoder"] = CFG["encoders"][encoder]
        config["matcher"] = xmc_config.matcher_params(CFG, ds, encoder)
        top_b, max_length = config["matcher"]["top_b"], CFG["encoders"][encoder].get("max_length", 128)
    if m.indexer == "text-emb":
        config["text_emb"] = CFG["text_emb"]
    if m.indexer == "pifa-neural":
        config["pifa_neural"] = CFG["pifa_neural"]
    return {"kind": "model", "ranker_input": m.input, "combine": m.combine, "top_b": top_b, "top_k": top_k,
            "max_length": max_length, "config": config}
