"""What the workflow plans, as pure functions of a resolved config: the files a ranker or a linear
matcher reads, the columns of the results table, the bundles to export and what each bundle needs.

``rules/common.smk`` keeps only thin input functions over these (wildcards in, paths out), so the
logic is importable and unit-tested. ``root`` is the results folder (``results``).
"""
from __future__ import annotations

from xmc import config as xmc_config
from xmc.data.dataset import SPLITS
from xmc.vocabulary import AUTO

__all__ = ["feature_files", "matcher_dir", "ranker_input_files", "model_description", "model_costs", "bundles",
           "export_inputs", "export_settings"]


def feature_files(root: str, dataset: str, indexer: str, matcher: str, input: str,
                  splits=SPLITS) -> dict[str, str]:
    """X_{split} (TF-IDF), Xc_{split} (character n-gram TF-IDF) and/or emb_{split} (dense) files of
    a ranker input, for each of ``splits``; the linear baselines' matcher reads the same features as
    their rankers (:func:`xmc.io.load_ranker_features` reads them)."""
    files = {}

    def tfidf():
        files.update({f"X_{s}": f"{root}/{dataset}/tfidf/X.{s}.npz" for s in splits})

    def char():
        files.update({f"Xc_{s}": f"{root}/{dataset}/tfidf-char/X.{s}.npz" for s in splits})

    def emb(folder):
        files.update({f"emb_{s}": f"{folder}/emb.{s}.npy" for s in splits})

    if input == "tfidf":
        tfidf()
    elif input == "tfidf+neural":
        if matcher == xmc_config.LINEAR_MATCHER:
            raise ValueError("the linear matcher has no neural embeddings: use ranker input 'tfidf'")
        tfidf()
        emb(f"{root}/{dataset}/matcher/{indexer}/{matcher}")
    else:
        kind, encoder = xmc_config.parse_linear_input(input)
        if matcher != xmc_config.LINEAR_MATCHER:
            raise ValueError(f"ranker input {input!r} belongs to the linear baselines (matcher 'linear')")
        if kind == "pre":
            emb(f"{root}/{dataset}/pretrained/{encoder}")
        elif kind == "tfidf+fnt":  # the fine-tuned matcher of the same indexer
            tfidf()
            emb(f"{root}/{dataset}/matcher/{indexer}/{encoder}")
        else:  # char or tfidf+char
            if kind == "tfidf+char":
                tfidf()
            char()
    return files


def matcher_dir(root: str, dataset: str, indexer: str, matcher: str, input: str) -> str:
    """A transformer matcher's folder; the linear matcher's is `linear` on TF-IDF, `linear.{input}`
    on the other baseline features."""
    if matcher == xmc_config.LINEAR_MATCHER and input != "tfidf":
        return f"{root}/{dataset}/matcher/{indexer}/linear.{input}"
    return f"{root}/{dataset}/matcher/{indexer}/{matcher}"


def ranker_input_files(cfg: dict, root: str, dataset: str, indexer: str, matcher: str, input: str,
                       split: str, negatives: str = "tfn") -> dict[str, str]:
    """Features of the ranker input on ``split`` plus its top-b clusters: the prediction shortlist
    (``valid``, ``test``), or on ``train`` the MAN negatives, which only rankers with MAN read (a TFN ranker
    trains without waiting for the matcher's predictions). The clusters are the matcher's own,
    except for an XR-Transformer row with `xr_transformer.shortlist: linear`, whose come from the
    linear tree over [TF-IDF ; the fine-tuned embedding] (PECOS's concat model, rules
    train/predict_xr_shortlist), and a transformer matcher with `matcher.knn`, whose its nearest
    training documents vote for (rule knn_shortlist)."""
    if split not in SPLITS:
        raise ValueError(f"ranker_input_files: split must be one of {SPLITS}, got {split!r}")
    base = matcher_dir(root, dataset, indexer, matcher, input)
    files = feature_files(root, dataset, indexer, matcher, input, splits=(split,))
    if xmc_config.uses_xr_shortlist(cfg, matcher):
        base = f"{base}/shortlist"
    elif xmc_config.uses_knn_shortlist(cfg, dataset, matcher):
        base = f"{base}/knn"
    if split != "train" or "man" in negatives.split("+"):
        files[f"M_{split}"] = f"{base}/topb.{split}.npz"
    return files


def model_description(cfg: dict, name: str, dataset: str | None = None) -> dict[str, str]:
    """Columns of the results table for one model or ensemble (an ensemble joins its members'
    distinct values with '+'). On ``dataset``, a matcher whose shortlist its nearest training
    documents vote for (``matcher.knn``) reads "<encoder> (knn)": not the paper's head."""
    if name in cfg["ensembles"]:
        members = [model_description(cfg, m, dataset) for m in xmc_config.ensemble_members(cfg, name)]
        return join_descriptions(members, cfg["ensembles"][name]["method"])
    m = xmc_config.describe_model(cfg, name)
    knn = dataset is not None and xmc_config.uses_knn_shortlist(cfg, dataset, m.matcher)
    return {"indexer": m.indexer, "matcher": f"{m.matcher} (knn)" if knn else m.matcher, "ranker_input": m.input,
            "negatives": m.negatives, "combine": m.combine, "ensemble": ""}


def join_descriptions(members: list[dict], method: str) -> dict[str, str]:
    """An ensemble's columns from its members' (:func:`model_description`): each column's distinct
    values joined with '+', and the rule in ``ensemble``."""
    def join(key):
        return "+".join(dict.fromkeys(v for m in members if (v := m[key])))

    return {**{key: join(key) for key in ("indexer", "matcher", "ranker_input", "negatives", "combine")},
            "ensemble": method}


def member_descriptions(cfg: dict, name: str, dataset: str | None = None) -> dict[str, dict]:
    """An auto ensemble's candidates -> their columns (the pick's row is joined from those it
    keeps); empty for any other model."""
    if not _is_auto(cfg, name):
        return {}
    return {m: model_description(cfg, m, dataset) for m in xmc_config.ensemble_members(cfg, name)}


def selection_file(cfg: dict, root: str, dataset: str, name: str) -> str | None:
    """The pick of an ``auto`` ensemble on the validation split (rule select_ensemble); None for
    any other model or ensemble."""
    return f"{root}/{dataset}/selection/{name}.json" if _is_auto(cfg, name) else None


def _is_auto(cfg: dict, name: str) -> bool:
    return cfg["ensembles"].get(name, {}).get("method") == AUTO


def member_predictions(cfg: dict, root: str, dataset: str, name: str, split: str) -> list[str]:
    """The predictions of ensemble ``name``'s members (an auto ensemble's candidates) on ``split``."""
    return [f"{root}/{dataset}/predictions/{split}/{m}.npz" for m in xmc_config.ensemble_members(cfg, name)]


def shortlist_files(cfg: dict, root: str, dataset: str, name: str, split: str) -> list[str]:
    """[top-b clusters of ``split``, the indexer's C] of a model whose rankers score a matcher's
    shortlist (its recall is a results column); none for an ensemble, APLC or a peer."""
    if name in cfg["ensembles"] or name in xmc_config.aplc_models(cfg) or name in xmc_config.peer_models(cfg):
        return []
    m = xmc_config.Model.parse(name)
    files = ranker_input_files(cfg, root, dataset, m.indexer, m.matcher, m.input, split)
    return [files[f"M_{split}"], f"{root}/{dataset}/indexer/{m.indexer}/C.npz"]


def model_costs(cfg: dict, root: str, dataset: str, name: str, split: str = "test") -> list[str]:
    """The info files of a peer's training and prediction (of ``split``) jobs (train_s, predict_s,
    peak memory); none for our models, whose costs are spread over shared jobs (see the timing table)."""
    if name not in xmc_config.peer_models(cfg):
        return []
    return [f"{root}/{dataset}/peers/{name}/train.json", f"{root}/{dataset}/peers/{name}/predict.{split}.json"]


def model_names(cfg: dict) -> list[str]:
    """Every model and ensemble of the grid (the rows of the results table)."""
    return ([m.name for m in xmc_config.models(cfg)] + xmc_config.aplc_models(cfg) + xmc_config.peer_models(cfg)
            + list(cfg["ensembles"]))


def bundles(cfg: dict, root: str) -> list[str]:
    """The bundle folders to export: every model and ensemble but the peers' and those a bundle
    cannot hold yet, APLC's end-to-end models and the linear matchers over encoder features (the baselines on
    phi_pre / phi_fnt and XR-Transformer's linear shortlist: a bundle would need the encoder beside
    the linear matcher), the baselines on phi_char (it would need the character vectorizer), and the
    ensembles with such a member. A model whose shortlist the nearest training documents vote for
    (`matcher.knn`) carries their embeddings (knn/memory.npy)."""
    skip = set(xmc_config.aplc_models(cfg)) | set(xmc_config.peer_models(cfg)) | {
        m.name for m in xmc_config.baseline_models(cfg) if m.input != "tfidf"} | {
        m.name for m in xmc_config.xr_models(cfg) if xmc_config.uses_xr_shortlist(cfg, m.matcher)}

    def members(name):
        return xmc_config.ensemble_members(cfg, name) if name in cfg["ensembles"] else []

    return [f"{root}/{ds}/models/{name}" for ds in cfg["datasets"] for name in model_names(cfg)
            if name not in skip and not set(members(name)) & skip]


def export_inputs(cfg: dict, root: str, dataset: str, name: str) -> dict:
    """A model's trained parts, or an ensemble's member bundles; its metrics go in the manifest."""
    files = {"labels": f"{root}/{dataset}/prepared/label_names.txt",
             "metrics": f"{root}/{dataset}/metrics/test/{name}.json"}
    if name in cfg["ensembles"]:
        files["members"] = [f"{root}/{dataset}/models/{m}" for m in xmc_config.ensemble_members(cfg, name)]
        selection = selection_file(cfg, root, dataset, name)
        if selection:  # method auto: the rule and members picked on validation
            files["selection"] = selection
        return files
    m = xmc_config.Model.parse(name)
    base = f"{root}/{dataset}/matcher/{m.indexer}/{m.matcher}"
    files.update({
        "label_texts": f"{root}/{dataset}/prepared/label_text.txt",
        "vectorizer": f"{root}/{dataset}/tfidf/vectorizer.npz",
        "assignment": f"{root}/{dataset}/indexer/{m.indexer}/C.npz",
        "matcher": f"{base}/model.npz" if m.matcher == xmc_config.LINEAR_MATCHER else f"{base}/model",
        "ranker": f"{root}/{dataset}/ranker/{m.indexer}/{m.matcher}/{m.input}.{m.negatives}/model.npz",
    })
    if xmc_config.uses_knn_shortlist(cfg, dataset, m.matcher):  # the memory the vote reads
        files.update({"knn_memory": f"{base}/emb.train.npy", "knn_targets": f"{root}/{dataset}/prepared/Y.train.npz"})
        if xmc_config.matcher_params(cfg, dataset, m.matcher)["knn"].get("pretrained_weight", 0):
            files["knn_pretrained_memory"] = f"{root}/{dataset}/pretrained/{m.matcher}/emb.train.npy"
    return files


def pretrained_precision(matcher_params: dict) -> str:
    """phi_pre's pass runs as the encoder's matcher predictions do (predict_precision, else precision)."""
    return matcher_params.get("predict_precision") or matcher_params.get("precision", "fp32")


def export_settings(cfg: dict, dataset: str, name: str) -> dict:
    """What the bundle needs to predict as the workflow did, and the config sections behind it."""
    top_k = cfg["ranker"]["top_k"]
    if name in cfg["ensembles"]:
        return {"kind": "ensemble", "method": cfg["ensembles"][name]["method"], "top_k": top_k,
                "config": {"ensemble": cfg["ensembles"][name], "seed": cfg["seed"]}}
    m = xmc_config.Model.parse(name)
    config = {"seed": cfg["seed"], "tfidf": cfg["tfidf"], "indexing": cfg["indexing"],
              "n_clusters": xmc_config.n_clusters(cfg, dataset),
              "ranker": {"C": cfg["ranker"]["C"], "threshold": cfg["ranker"]["threshold"], "top_k": top_k}}
    if m.matcher == xmc_config.LINEAR_MATCHER:
        config["linear_baseline"] = cfg["linear_baseline"]
        top_b, max_length = cfg["matcher"]["top_b"], None
    else:
        encoder = m.matcher.removeprefix(xmc_config.XR_MATCHER_PREFIX)  # an XR matcher fine-tunes its encoder
        config["encoder"] = cfg["encoders"][encoder]
        config["matcher"] = xmc_config.matcher_params(cfg, dataset, encoder)
        top_b, max_length = config["matcher"]["top_b"], cfg["encoders"][encoder].get("max_length", 128)
    if m.indexer == "text-emb":
        config["text_emb"] = cfg["text_emb"]
    if m.indexer == "pifa-neural":
        config["pifa_neural"] = cfg["pifa_neural"]
    knn = config.get("matcher", {}).get("knn") if xmc_config.uses_knn_shortlist(cfg, dataset, m.matcher) else None
    settings = {"kind": "model", "ranker_input": m.input, "combine": m.combine, "top_b": top_b, "top_k": top_k,
                "max_length": max_length, "knn": knn, "config": config}
    if knn and knn.get("pretrained_weight", 0):  # the encoder before fine-tuning, as rule embed_pretrained ran it
        settings["knn_pretrained"] = {"model": config["encoder"]["model"], "max_length": max_length,
                                      "precision": pretrained_precision(config["matcher"])}
    return settings
