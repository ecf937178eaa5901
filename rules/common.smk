import functools
import json
import os
import re
import sys
import uuid
from pathlib import Path

from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate
from snakemake.common.configfile import load_configfile as _load_configfile

from xmc import code_digest as xmc_code_digest
from xmc import config as xmc_config
from xmc import devices as xmc_devices
from xmc import hub as xmc_hub
from xmc import jobenv as xmc_jobenv
from xmc import paper as xmc_paper
from xmc import peers as xmc_peers
from xmc import plan as xmc_plan
from xmc.data import download as xmc_download

R = "results"
# The splits every model is predicted and scored on: choices are made on valid, test is only scored.
EVAL_SPLITS = "valid|test"

try:  # one line per error (Snakemake's own message prints the schema and the whole config)
    xmc_config.check_schema(config, _load_configfile(str(Path(workflow.basedir) / "config" / "schema.yaml")))
except xmc_config.ConfigError as err:
    raise ValueError(f"invalid configuration: {err}") from None
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

# Under conda (and no peers.python) the peer rules run in environment-peers.yml, made when they run.
_PEERS_IN_CONDA = (DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
                   and CFG["peers"]["python"] is None)
if not _PEERS_IN_CONDA and not workflow.remote_exec:  # once per run, not again in every job process
    try:  # a missing peer package fails here, not in the peer's first job
        xmc_peers.check_available(CFG["peers"]["systems"], CFG["peers"]["python"])
    except ValueError as err:
        raise ValueError(f"invalid configuration: {err}") from None



onstart:
    # A real run (not -n, which touches no network) checks once, before any job, that every hub id
    # is cached or reachable: not a minute of retries in each job that loads the encoder.
    try:
        xmc_config.check_encoders(CFG, network=True)
    except xmc_config.ConfigError as err:
        logger.error(f"invalid configuration: {err}")
        raise SystemExit(1)


DATASETS = list(CFG["datasets"])

if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    # environment.yml cannot install this project (Snakemake copies it to .snakemake/conda/, where
    # pip's `-e .` would point): the jobs import xmc from this checkout instead.
    xmc_jobenv.import_from_checkout(workflow.basedir)


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
MATCHER_GPUS = CFG["resources"]["matcher_gpus"]  # training (matcher, XR, APLC): data-parallel over these
ONE_GPU = min(1, MATCHER_GPUS)  # inference, text-emb, phi_pre: one device


def _check_thread_cap():
    """The usual cause: profiles/default's `cores: all` merged on top of profiles/slurm's."""
    capped = xmc_devices.threads_over_cores(workflow.resource_settings.overwrite_threads, workflow.cores)
    if capped:
        logger.warning(f"set-threads asks for more threads than --cores {workflow.cores} allows, so "
                       f"Snakemake cuts them to {workflow.cores}: {capped}. With profiles/slurm, run "
                       f"`snakemake --workflow-profile profiles/slurm` (with --profile, profiles/default's "
                       f"`cores: all` is merged on top and caps every job at this machine's cores).")


if not workflow.remote_exec:  # a job step re-reads the workflow with its own --cores
    _check_thread_cap()
    # One id per workflow run, inherited by its jobs: "no GPU is visible" is said once per run and host.
    os.environ.setdefault(xmc_devices.RUN_ENV, uuid.uuid4().hex)


def gpu_threads(gpus):
    """Threads of a job holding `gpus` GPUs: its share of --cores under --resources gpu=G, so that
    GPU jobs run side by side (a job asking for every core would run alone)."""
    total = workflow.global_resources.get("gpu")
    return xmc_devices.threads_per_gpu_job(workflow.cores, getattr(total, "value", total), gpus,
                                           CFG["resources"]["threads_per_gpu"])


# ---- offline compute nodes ------------------------------------------------------------------
def encoder_specs():
    return sorted({spec["model"] for spec in CFG["encoders"].values()})


if workflow.remote_exec:  # a cluster job: compute nodes often have no internet, so never wait on the hub
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if xmc_devices.under_scheduler():  # one sbatch per job: SLURM gave it exactly its GPUs, no locks
        os.environ[xmc_devices.LOCKS_ENV] = "0"
elif workflow.non_local_exec:  # the submit host of a cluster run: the hub encoders into the cache first
    _missing = xmc_hub.missing(encoder_specs())
    if _missing:
        logger.warning(f"fetching {', '.join(_missing)} into the Hugging Face cache before submitting jobs "
                       f"(they run offline): HF_HOME must be on storage the compute nodes share")
        xmc_hub.prefetch(_missing, logger.info)


# ---- final targets -------------------------------------------------------------------------
def model_names():
    return xmc_plan.model_names(CFG)


def get_final_output():
    return [f"{R}/tables/results.csv", f"{R}/tables/results.md"] + report_outputs() + xmc_plan.bundles(CFG, R)


def all_metrics():
    return [f"{R}/{ds}/metrics/{split}/{name}.json" for ds in DATASETS for split in ("valid", "test")
            for name in model_names()]


# ---- data ----------------------------------------------------------------------------------
def dataset_cfg(wildcards):
    return CFG["datasets"][wildcards.dataset]


def download_input(wildcards):
    """A local source's files are inputs, so replacing the archive, or rewriting a file inside a
    source folder, reruns everything downstream. An archive pinned by ``sha256`` is identified by
    that digest (a changed pin reruns, as a changed param), not by its timestamp: a copy, re-sync
    or re-mount of the same bytes must not rerun a grid of hours."""
    ds = dataset_cfg(wildcards)
    files = xmc_download.local_source_files(ds["source"])
    return [ancient(f) for f in files] if ds.get("sha256") else files


def download_source(wildcards):
    return dataset_cfg(wildcards)["source"]


def download_sha256(wildcards):
    return dataset_cfg(wildcards).get("sha256")


def download_cap(wildcards):
    """The dataset's extraction cap in GB and the config key that sets it (for the message)."""
    return {"max_extracted_gb": dataset_cfg(wildcards).get("max_extracted_gb", 100),
            "cap_key": f"datasets.{wildcards.dataset}.max_extracted_gb"}


def dataset_format(wildcards):
    return dataset_cfg(wildcards)["format"]


def dataset_reader_options(wildcards):
    return xmc_config.reader_options(dataset_cfg(wildcards))


def dataset_subsample(wildcards):
    return dataset_cfg(wildcards).get("subsample") or {}


def validation_params(wildcards):
    """The held-out share of train, where the data ships no validation split, and its seed."""
    v = CFG["validation"]
    return {"fraction": v["fraction"], "seed": v.get("seed", CFG["seed"])}


# ---- encoders and matchers -----------------------------------------------------------------
def encoder_model(wildcards):
    return CFG["encoders"][wildcards.encoder]["model"]


def encoder_max_length(wildcards):
    return CFG["encoders"][wildcards.encoder].get("max_length", 128)


def text_emb_encoder_model(wildcards):
    return CFG["encoders"][CFG["text_emb"]["encoder"]]["model"]


def matcher_params(wildcards):
    """The encoder's matcher settings but `knn`, which only rule knn_shortlist reads (changing it
    retrains and repredicts nothing)."""
    params = xmc_config.matcher_params(CFG, wildcards.dataset, wildcards.encoder)
    return {k: v for k, v in params.items() if k != "knn"}


def matcher_knn(wildcards):
    return xmc_config.matcher_params(CFG, wildcards.dataset, wildcards.encoder)["knn"]


def knn_pretrained_embeddings(wildcards):
    """With matcher.knn.pretrained_weight > 0 the neighbours are also sought in phi_pre."""
    if not matcher_knn(wildcards).get("pretrained_weight", 0):
        return {}
    return {f"pre_{split}": f"{R}/{wildcards.dataset}/pretrained/{wildcards.encoder}/emb.{split}.npy"
            for split in ("train", "valid", "test")}


def pretrained_precision(wildcards):
    return xmc_plan.pretrained_precision(matcher_params(wildcards))


def matcher_train_params(wildcards):
    """What training reads: a prediction-only setting changed reruns predict_matcher alone."""
    return {k: v for k, v in matcher_params(wildcards).items() if k != "predict_precision"}


def matcher_init_embeddings(wildcards):
    """head_init's input: phi_pre of the training documents, which is the pretrained encoder's pooled
    embedding when the matcher pools by mean (else training embeds the documents itself)."""
    params = matcher_params(wildcards)
    if params.get("head_init", "random") == "random" or params.get("pooling") != "mean":
        return {}
    return {"init_emb": f"{R}/{wildcards.dataset}/pretrained/{wildcards.encoder}/emb.train.npy"}


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
def ranker_train_files(wildcards):
    """Features of the ranker input, plus the training split's top-b clusters for MAN negatives."""
    w = wildcards
    return xmc_plan.ranker_input_files(CFG, R, w.dataset, w.indexer, w.matcher, w.input, "train", w.negatives)


def ranker_predict_files(wildcards):
    """Features of the ranker input plus the split's top-b clusters (the shortlist)."""
    w = wildcards
    return xmc_plan.ranker_input_files(CFG, R, w.dataset, w.indexer, w.matcher, w.input, w.split)


def linear_matcher_features(wildcards):
    """Features of a linear baseline's matcher (the same as its rankers'), every split."""
    w = wildcards
    return xmc_plan.feature_files(R, w.dataset, w.indexer, xmc_config.LINEAR_MATCHER, w.input)


def linear_matcher_train_features(wildcards):
    """The training split's features of a linear baseline's matcher."""
    w = wildcards
    return xmc_plan.feature_files(R, w.dataset, w.indexer, xmc_config.LINEAR_MATCHER, w.input, splits=("train",))


def ranker_params():
    r = CFG["ranker"]
    return {"C": r["C"], "threshold": r["threshold"]}


# ---- ensembles -----------------------------------------------------------------------------
def ensemble_inputs(wildcards):
    return xmc_plan.member_predictions(CFG, R, wildcards.dataset, wildcards.ensemble, wildcards.split)


def ensemble_candidate_predictions(wildcards):
    """An auto ensemble's candidates, on the validation split only."""
    return xmc_plan.member_predictions(CFG, R, wildcards.dataset, wildcards.ensemble, "valid")


def ensemble_selection_files(wildcards):
    """The pick of an auto ensemble (rule select_ensemble); nothing for another model."""
    name = getattr(wildcards, "ensemble", None) or wildcards.model
    selection = xmc_plan.selection_file(CFG, R, wildcards.dataset, name)
    return [selection] if selection else []


def ensemble_method(wildcards):
    return CFG["ensembles"][wildcards.ensemble]["method"]


def ensemble_members(wildcards):
    return xmc_config.ensemble_members(CFG, wildcards.ensemble)


def model_description(wildcards):
    """Columns of the results table for one model or ensemble."""
    return xmc_plan.model_description(CFG, wildcards.model, wildcards.dataset)


def model_shortlist(wildcards):
    """The matcher's top-b of the split and the clusters, for the shortlist-recall column."""
    return xmc_plan.shortlist_files(CFG, R, wildcards.dataset, wildcards.model, wildcards.split)


def model_member_descriptions(wildcards):
    """An auto ensemble's candidates' results-table columns (evaluate joins those of its pick)."""
    return xmc_plan.member_descriptions(CFG, wildcards.model, wildcards.dataset)


def model_costs(wildcards):
    """A peer's training and prediction times and peak memory (its results-table columns)."""
    return xmc_plan.model_costs(CFG, R, wildcards.dataset, wildcards.model, wildcards.split)


# ---- peers (rules/peers.smk) ---------------------------------------------------------------
# The peer rules run workflow_scripts/peer.py with peers.python (unset: the workflow's own
# interpreter, or under conda the `python` of environment-peers.yml), which may lack this project,
# so PYTHONPATH names the project. Both reach the shell through the environment (every job process
# reads this file again), not through params, so that a moved checkout or a new virtual environment
# does not rerun the peers; an explicit peers.python is a param of its own.
xmc_peers.set_job_environment(workflow.basedir,
                              CFG["peers"]["python"] or ("python" if _PEERS_IN_CONDA else sys.executable))


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


def paper_same_data():
    """Our dataset -> whether it is the paper's own dataset (`datasets.<name>.same_as_paper`), where
    the config says; xmc.tables decides the others by name (Table 5 prints differences only there)."""
    return {ds: spec["same_as_paper"] for ds, spec in CFG["datasets"].items() if "same_as_paper" in spec}


def table5_ids():
    """Table 5 configuration id -> model or ensemble of the grid (None: not in it)."""
    return xmc_paper.table5_models(CFG)


def dataset_metrics(wildcards):
    """The test split's metrics (the figures show test)."""
    return [f"{R}/{wildcards.dataset}/metrics/test/{name}.json" for name in model_names()]


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
def export_inputs(wildcards):
    return xmc_plan.export_inputs(CFG, R, wildcards.dataset, wildcards.model)


def export_settings(wildcards):
    return xmc_plan.export_settings(CFG, wildcards.dataset, wildcards.model)
