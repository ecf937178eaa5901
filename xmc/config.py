"""Workflow configuration: defaults, cross-field checks and the model grid.

The JSON schema (config/schema.yaml) checks each value on its own; this module checks what a schema
cannot (names that must refer to each other) and expands the grid of models a dataset produces, so
that the Snakefile and the tests share one definition of it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

# Allowed values: declared once in xmc.vocabulary (a module of constants, so that the Snakefile does
# not import the solvers); config/schema.yaml's enums are tested equal to them.
from xmc import vocabulary
from xmc.vocabulary import INDEXERS, LINEAR_INPUTS, PAPER_ROLES, PEERS, RANKER_INPUTS

NEGATIVES, COMBINE = vocabulary.NEGATIVES, vocabulary.COMBINE  # the Snakefile's wildcard constraints

LINEAR_MATCHER = "linear"
_ENCODER_INPUTS = ("pre", "tfidf+fnt")  # linear inputs named with their encoder: pre-{encoder}

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "config" / "schema.yaml"


def schema_defaults(schema: dict) -> dict:
    """The defaults config/schema.yaml declares: each fixed key (``properties``, recursively) with a
    ``default:`` gets it, and a section gets a dict of its keys' defaults (left out when none has
    one). Map entries (``additionalProperties``: a dataset's or an encoder's options) and shared
    definitions (``$ref``) are not walked: their defaults are per entry (Snakemake's ``validate``
    fills them, and the readers apply them), and a section that uses a definition declares its own
    defaults as a whole (``tfidf`` and ``tfidf_char`` share one definition but not its defaults)."""
    out = {}
    for key, node in schema.get("properties", {}).items():
        if "default" in node:
            out[key] = copy.deepcopy(node["default"])
        else:
            inner = schema_defaults(node)
            if inner:
                out[key] = inner
    return out


def _read_schema() -> dict:
    import yaml

    with open(SCHEMA_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


# Every default is the schema's. Those a schema default cannot say, because they depend on other
# keys, are filled where they are read: text_emb.encoder and pifa_neural.encoder (resolve: the first
# matcher), linear_baseline.encoder (resolve: paper.roles.XLNet, else the first matcher),
# paper.combine (resolve: the first of ranker.combine), validation.seed (the global seed) and a
# dataset's n_clusters (indexing.n_clusters, else the depth rule).
DEFAULTS = schema_defaults(_read_schema())
XR_MATCHER_PREFIX = "xr-transformer-"  # matcher name of an XR-Transformer matcher: xr-transformer-{encoder}
APLC_PREFIX = "aplc-"  # model name of an APLC model: aplc-{encoder}
# APLC settings taken from the encoder's merged matcher settings unless the aplc section sets them.
_APLC_FROM_MATCHER = ("seed", "max_steps", "batch_size", "pooling", "device", "eval_batch_size", "dropout",
                      "max_grad_norm", "weight_decay", "log_every", "precision", "grad_accum", "checkpoint_every")


# Folders the run itself writes directly under results/ (rules/*.smk: {R}/logs/..., {R}/tables/...):
# a dataset of that name would mix its files with them.
RESERVED_DATASET_NAMES = ("logs", "tables", "figures", "benchmarks", "encoders")


class ConfigError(ValueError):
    """A configuration value that refers to something that does not exist."""


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Model:
    """One ranked model of the grid: indexer x matcher x ranker input x negatives x combination."""

    indexer: str
    matcher: str
    input: str
    negatives: str
    combine: str

    @property
    def name(self) -> str:
        return ".".join((self.indexer, self.matcher, self.input, self.negatives, self.combine))

    @classmethod
    def parse(cls, name: str) -> "Model":
        parts = name.split(".")
        if len(parts) != 5:
            raise ConfigError(f"model name {name!r} is not indexer.matcher.input.negatives.combine")
        return cls(*parts)


def n_clusters_key(cfg: dict, dataset: str) -> str:
    """The config key K of ``dataset`` comes from (for messages)."""
    if cfg["datasets"][dataset].get("n_clusters") is not None:
        return f"datasets.{dataset}.n_clusters"
    return "indexing.n_clusters"


def _check_datasets(cfg: dict) -> None:
    """Dataset options that would otherwise fail only inside a job: unknown codecs, options of
    another format."""
    import codecs

    for ds, spec in cfg["datasets"].items():
        if ds.lower() in RESERVED_DATASET_NAMES:
            raise ConfigError(f"datasets.{ds}: {ds!r} is a folder the run writes under results/ "
                              f"({', '.join(RESERVED_DATASET_NAMES)}); rename the dataset")
        for key in ("encoding", "texts_encoding"):
            if key in spec:
                try:
                    codecs.lookup(spec[key])
                except LookupError:
                    raise ConfigError(f"datasets.{ds}.{key}: unknown encoding {spec[key]!r} (e.g. utf-8, "
                                      f"latin-1, cp1252)") from None
        if spec.get("label_separator") is not None and spec["format"] != "attentionxml":
            raise ConfigError(f"datasets.{ds}.label_separator applies to the attentionxml format only "
                              f"(format: {spec['format']})")


def reader_options(spec: dict) -> dict:
    """The reader's options of a dataset's config (only those set away from their defaults, so that
    configs that do not use them plan as before)."""
    options = {"encoding": spec.get("encoding", "utf-8")}
    for key, option, default in (("texts_encoding", "text_encoding", "utf-8"), ("label_separator", "label_separator", None),
                                 ("control_characters", "control_characters", "error")):
        if spec.get(key, default) != default:
            options[option] = spec[key]
    return options


def _check_tfidf(t: dict, section: str = "tfidf") -> None:
    low, high = t["ngram_range"]
    if low > high:
        raise ConfigError(f"{section}.ngram_range: [{low}, {high}] has its lower bound above its upper bound; "
                          f"write [{high}, {low}]")
    for key in ("min_df", "max_df"):  # scikit-learn: a float is a share of documents, an int a count
        if isinstance(t[key], float) and t[key] > 1.0:
            raise ConfigError(f"{section}.{key}: {t[key]} is a float above 1.0; a share of documents is in "
                              f"[0, 1], a count is an integer")
    same_kind = isinstance(t["min_df"], float) == isinstance(t["max_df"], float)
    if same_kind and t["min_df"] > t["max_df"]:
        raise ConfigError(f"{section}.min_df ({t['min_df']}) is above {section}.max_df ({t['max_df']}): no term "
                          f"could be kept")


def resolve(config: dict) -> dict:
    """Fill defaults and check cross references; return a new config dict."""
    cfg = _merge(DEFAULTS, config)
    _check_datasets(cfg)
    _check_tfidf(cfg["tfidf"])
    _check_tfidf(cfg["tfidf_char"], "tfidf_char")
    encoders = cfg["encoders"]
    for name in cfg["matchers"]:
        if name not in encoders:
            raise ConfigError(f"matchers: {name!r} is not an encoder; known encoders: {sorted(encoders)}")
    # No matchers: the linear path alone (pifa-tfidf, the linear baselines on TF-IDF, the peers).
    first_matcher = cfg["matchers"][0] if cfg["matchers"] else None
    text_encoder = cfg["text_emb"].setdefault("encoder", first_matcher)
    if "text-emb" in cfg["indexers"] and text_encoder not in encoders:
        raise ConfigError(f"text_emb.encoder: {text_encoder!r} is not an encoder; known: {sorted(encoders)}")
    source = cfg["pifa_neural"]
    source.setdefault("encoder", first_matcher)
    if "pifa-neural" in cfg["indexers"]:
        if source["encoder"] not in cfg["matchers"]:
            raise ConfigError(f"pifa_neural.encoder: {source['encoder']!r} is not among matchers {cfg['matchers']}")
        if source["indexer"] not in cfg["indexers"]:
            raise ConfigError(f"pifa_neural.indexer: {source['indexer']!r} is not among indexers {cfg['indexers']}")
    paper = cfg["paper"]
    for role, enc in paper["roles"].items():
        if role not in PAPER_ROLES:
            raise ConfigError(f"paper.roles: unknown role {role!r}; accepted: {', '.join(PAPER_ROLES)}")
        if enc not in cfg["matchers"]:
            raise ConfigError(f"paper.roles.{role}: {enc!r} is not among matchers {cfg['matchers']}")
    paper.setdefault("combine", cfg["ranker"]["combine"][0])
    if paper["combine"] not in cfg["ranker"]["combine"]:
        raise ConfigError(f"paper.combine: {paper['combine']!r} is not among ranker.combine {cfg['ranker']['combine']}")
    baseline = cfg["linear_baseline"]
    # phi_pre / phi_fnt come from the paper's XLNet encoder unless named (the paper used XLNet)
    baseline.setdefault("encoder", paper["roles"].get("XLNet", first_matcher))
    for key in ("indexer", "negatives", "combine"):  # one value or a list of them; a list from here on
        if isinstance(baseline[key], str):
            baseline[key] = [baseline[key]]
    if baseline["enabled"]:
        for ix in baseline["indexer"]:
            if ix not in cfg["indexers"]:
                raise ConfigError(f"linear_baseline.indexer: {ix!r} is not among indexers {cfg['indexers']}")
        for kind in baseline["inputs"]:
            if kind not in LINEAR_INPUTS:
                raise ConfigError(f"linear_baseline.inputs: unknown {kind!r}; accepted: {', '.join(LINEAR_INPUTS)}")
        if "pre" in baseline["inputs"] and baseline["encoder"] not in encoders:
            raise ConfigError(f"linear_baseline.encoder: {baseline['encoder']!r} is not an encoder; "
                              f"known: {sorted(encoders)}")
        if "tfidf+fnt" in baseline["inputs"] and baseline["encoder"] not in cfg["matchers"]:
            raise ConfigError(f"linear_baseline.encoder: {baseline['encoder']!r} must be among matchers "
                              f"{cfg['matchers']} for the tfidf+fnt input (its fine-tuned embeddings)")
    for ds in cfg["datasets"]:
        k = n_clusters(cfg, ds)
        if k is None:
            continue  # the depth rule picks K from the data
        if k & (k - 1):
            raise ConfigError(f"{n_clusters_key(cfg, ds)}: K = {k} (dataset {ds}) must be a power of two "
                              "(the indexer splits clusters in two)")
        for enc in cfg["matchers"]:
            top_b = matcher_params(cfg, ds, enc)["top_b"]
            if top_b > k:
                raise ConfigError(f"datasets.{ds}, encoder {enc}: matcher top_b = {top_b} is larger than "
                                  f"K = {k} ({n_clusters_key(cfg, ds)})")
    for ds in cfg["datasets"]:
        k = n_clusters(cfg, ds)
        if k is not None and cfg["ranker"]["shards"] > k:
            raise ConfigError(f"ranker.shards = {cfg['ranker']['shards']} is larger than K = {k} "
                              f"({n_clusters_key(cfg, ds)}) of dataset {ds}")
    xr = cfg["xr_transformer"]
    for section, names in (("xr_transformer", xr["encoders"]), ("aplc", cfg["aplc"]["encoders"])):
        for name in names:
            if name not in encoders:
                raise ConfigError(f"{section}.encoders: {name!r} is not an encoder; known encoders: {sorted(encoders)}")
    if xr["encoders"] and xr["indexer"] not in cfg["indexers"]:
        raise ConfigError(f"xr_transformer.indexer: {xr['indexer']!r} is not among indexers {cfg['indexers']}")
    for ds in cfg["datasets"]:
        k = n_clusters(cfg, ds)
        if xr["encoders"] and k is not None and xr["levels"] is not None and xr["levels"][-1] != k:
            raise ConfigError(f"xr_transformer.levels {xr['levels']} must end with datasets.{ds}'s n_clusters "
                              f"(K) = {k}")
        for enc in xr["encoders"]:
            top_b = matcher_params(cfg, ds, enc)["top_b"]
            if k is not None and top_b > k:
                raise ConfigError(f"datasets.{ds}, xr_transformer encoder {enc}: matcher top_b = {top_b} is larger "
                                  f"than n_clusters (K) = {k}")
    known = {m.name for m in models(cfg)} | set(aplc_models(cfg))
    for ens, spec in cfg["ensembles"].items():
        if "." in ens:
            raise ConfigError(f"ensembles: name {ens!r} must not contain '.'")
        if ens in PEERS:
            raise ConfigError(f"ensembles: name {ens!r} is taken by a peer's row (peers.systems)")
        for member in spec["models"]:
            if member != "all" and member not in known:
                raise ConfigError(
                    f"ensembles.{ens}.models: {member!r} is not a model of the grid; known models: {sorted(known)}")
    return cfg


def check_schema(config: dict, schema: dict) -> None:
    """The config against config/schema.yaml, as Snakemake's ``validate`` checks it, but with one
    line per error (the key and what is wrong, not the schema and the whole config), and integers
    that are integers: JSON Schema takes ``10.0`` for an integer, and a job fails on it later."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
        raise ConfigError(f"{key}: {message}")
    _strict_integers(config, schema, schema, "")


def _strict_integers(value, node: dict, schema: dict, key: str) -> None:
    while isinstance(node, dict) and "$ref" in node:  # only local "#/definitions/<name>" references
        target = schema
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if not isinstance(node, dict):
        return
    branches = [node] + [b for k in ("anyOf", "oneOf", "allOf") for b in node.get(k, [])]
    types = set()
    for b in branches:
        t = b.get("type", [])
        types.update([t] if isinstance(t, str) else t)
    if isinstance(value, float) and "integer" in types and "number" not in types:
        raise ConfigError(f"{key or '(top level)'}: {value!r} must be an integer (written without a "
                          "decimal point or exponent)")
    if isinstance(value, dict):
        for k, v in value.items():
            sub = node.get("properties", {}).get(k)
            if sub is None and isinstance(node.get("additionalProperties"), dict):
                sub = node["additionalProperties"]
            if sub is not None:
                _strict_integers(v, sub, schema, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, v in enumerate(value):
            _strict_integers(v, node["items"], schema, f"{key}[{i}]")


# Models whose position ids start after the padding index: two positions fewer for tokens.
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2}


def model_positions(model_dir: str) -> int | None:
    """Token positions a local model folder can embed (``max_position_embeddings`` of its
    config.json, less RoBERTa's offset), read without loading the weights; None when unbounded
    (XLNet: relative positions) or unknown (a hub id)."""
    import json

    config_file = Path(model_dir) / "config.json"
    if not config_file.is_file():
        return None
    model_config = json.loads(config_file.read_text(encoding="utf-8"))
    n = model_config.get("max_position_embeddings")
    if not isinstance(n, int) or n <= 0:
        return None
    return n - _POSITION_OFFSET.get(model_config.get("model_type"), 0)


def check_encoders(cfg: dict, network: bool = False) -> None:
    """Every configured encoder must be a packaged model, a local model folder or a hub id, and
    its ``max_length`` within its model's positions; this runs at start-up so that a typo in a path
    fails before any job. With ``network`` (a real run, not a dry run), a hub id that is neither in
    the local Hugging Face cache nor reachable fails here, once, naming the key."""
    from xmc.encoders import resolve_encoder

    for name, spec in cfg["encoders"].items():
        try:
            model = resolve_encoder(spec["model"])
        except ValueError as err:
            raise ConfigError(f"encoders.{name}.model: {err}") from None
        positions = model_positions(model)
        lengths = [(f"encoders.{name}.max_length", spec.get("max_length"))]
        if cfg.get("text_emb", {}).get("encoder") == name:
            lengths.append(("text_emb.max_length", cfg["text_emb"].get("max_length")))
        for key, length in lengths:
            if positions is not None and isinstance(length, int) and length > positions:
                raise ConfigError(f"{key}: {length} tokens is more than the {positions} positions of "
                                  f"encoders.{name}.model ({model}, config.json max_position_embeddings)")
        if network and model == spec["model"].strip() and not model.startswith(("/", ".")):
            _check_hub_id(name, model)


def _check_hub_id(name: str, model_id: str) -> None:
    """A hub id must be in the local cache, or (online) answer a 5-second request for its
    config.json; else one error now instead of a minute of retries in every job."""
    import os

    how = (f"download it once where there is network (it is then cached), or set encoders.{name}.model "
           "to a local model folder or an installed model package (package:<name>); with "
           "HF_HUB_OFFLINE=1 the cache alone is used")
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers requires it
        return
    if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
        return  # cached
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ConfigError(f"encoders.{name}.model: hub id {model_id!r} is not in the local Hugging Face "
                          f"cache and HF_HUB_OFFLINE is set; {how}")
    try:
        get_hf_file_metadata(hf_hub_url(model_id, "config.json"), timeout=5)
    except Exception as err:  # no network, unknown id, gated model: all end the same way
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ConfigError(f"encoders.{name}.model: hub id {model_id!r} cannot be reached and is not in the "
                          f"local cache ({type(err).__name__}: {reason}); {how}") from None


def check_n_clusters(cfg: dict, dataset: str, n_labels: int) -> None:
    """K must not exceed the number of labels, nor ranker.shards K; known once the dataset has been
    prepared (on a first run, the cluster and train_ranker jobs check the same)."""
    from xmc.indexing import default_n_clusters

    k = n_clusters(cfg, dataset)
    if k is not None and k > n_labels:
        raise ConfigError(f"{n_clusters_key(cfg, dataset)}: K = {k} is larger than the number of labels "
                          f"({n_labels}) of dataset {dataset}")
    k = k or default_n_clusters(n_labels)
    if cfg["ranker"]["shards"] > k:
        raise ConfigError(f"ranker.shards = {cfg['ranker']['shards']} is larger than the K = {k} clusters "
                          f"of dataset {dataset}")


def headline_ranker(cfg: dict) -> tuple[str, str, str]:
    """(input, negatives, combine) of the paper's headline ranker in the grid: tfidf+neural and
    TFN+MAN where listed (else the last listed), with ``paper.combine``. Table 5 ids 2 and 4-9 and
    Table 3's X-Transformer row use it."""
    r = cfg["ranker"]
    inp = "tfidf+neural" if "tfidf+neural" in r["inputs"] else r["inputs"][-1]
    neg = "tfn+man" if "tfn+man" in r["negatives"] else r["negatives"][-1]
    return inp, neg, cfg["paper"].get("combine") or r["combine"][0]


# The paper's Table 5 ids as grid models: id -> (indexers, roles, ranker input, negatives)
TABLE5_GRID = {
    0: (("pifa-tfidf",), ("BERT",), "tfidf", "tfn"),
    1: (("pifa-tfidf",), ("BERT",), "tfidf+neural", "tfn"),
    2: (("pifa-tfidf",), ("BERT",), "tfidf+neural", "tfn+man"),
    3: (("pifa-tfidf",), ("RoBERTa",), "tfidf+neural", "tfn+man"),
    4: (("pifa-tfidf",), ("XLNet",), "tfidf+neural", "tfn+man"),
    5: (("pifa-neural",), ("XLNet",), "tfidf+neural", "tfn+man"),
    6: (("text-emb",), ("XLNet",), "tfidf+neural", "tfn+man"),
    7: (INDEXERS, ("XLNet",), "tfidf+neural", "tfn+man"),
    8: (("pifa-neural",), PAPER_ROLES, "tfidf+neural", "tfn+man"),
    9: (INDEXERS, PAPER_ROLES, "tfidf+neural", "tfn+man"),
}


def table5_members(cfg: dict, config_id: int) -> list[str] | None:
    """Model names that make up Table 5 id ``config_id`` in the resolved config ``cfg`` (one name for
    ids 0-6), or None where a role is unmapped or the roles collapse onto fewer models."""
    indexers, roles, inp, neg = TABLE5_GRID[config_id]
    mapping = cfg.get("paper", {}).get("roles", {})
    if any(role not in mapping for role in roles):
        return None
    combine = cfg.get("paper", {}).get("combine") or cfg["ranker"]["combine"][0]
    names = [Model(ix, mapping[role], inp, neg, combine).name for ix in indexers for role in roles]
    if len(set(names)) != len(names):
        return None
    return names


def _table_model_names(cfg: dict) -> set[str]:
    """What ``ranker.grid: tables`` keeps: each indexer x matcher's headline model, Table 5 ids 0-6
    and the models the ensembles name."""
    names = {Model(ix, enc, *headline_ranker(cfg)).name for ix in cfg["indexers"] for enc in cfg["matchers"]}
    for config_id in range(7):
        names.update(table5_members(cfg, config_id) or [])
    return names | _ensemble_member_names(cfg)


def _ensemble_member_names(cfg: dict) -> set[str]:
    """The model names the ensembles list (``all`` is not a name)."""
    return {m for spec in cfg["ensembles"].values() for m in spec["models"] if m != "all"}


def transformer_models(cfg: dict) -> list[Model]:
    """The matchers' models: ``ranker.grid: full`` the whole indexers x matchers x inputs x negatives x
    combine product; ``tables`` only what the tables and ensembles name (far fewer ranker jobs)."""
    r = cfg["ranker"]
    grid = [Model(ix, enc, inp, neg, comb)
            for ix in cfg["indexers"] for enc in cfg["matchers"]
            for inp in r["inputs"] for neg in r["negatives"] for comb in r["combine"]]
    if r.get("grid", "full") == "full":
        return grid
    keep = _table_model_names(cfg)
    return [m for m in grid if m.name in keep]


def linear_input_name(kind: str, encoder: str) -> str:
    """Ranker-input part of a linear baseline's model name: ``tfidf``, ``char``, ``tfidf+char``,
    ``pre-{encoder}`` or ``tfidf+fnt-{encoder}`` (the encoder whose embeddings are used)."""
    if kind in _ENCODER_INPUTS:
        return f"{kind}-{encoder}"
    if kind in LINEAR_INPUTS:
        return kind
    raise ConfigError(f"linear baseline input: unknown {kind!r}; accepted: {', '.join(LINEAR_INPUTS)}")


def parse_linear_input(name: str) -> tuple[str, str | None]:
    """Inverse of :func:`linear_input_name`: ``(kind, encoder or None)``."""
    if name in LINEAR_INPUTS and name not in _ENCODER_INPUTS:
        return name, None
    for kind in _ENCODER_INPUTS:
        if name.startswith(kind + "-"):
            return kind, name[len(kind) + 1:]
    raise ConfigError(f"{name!r} is not a linear baseline input "
                      f"(tfidf, char, tfidf+char, pre-<encoder>, tfidf+fnt-<encoder>)")


def baseline_models(cfg: dict) -> list[Model]:
    """The Table 3 linear baselines: one model per ``linear_baseline.inputs`` entry, negatives
    and combine, on the first ``linear_baseline.indexer``; the same on each further indexer, of
    which ``ranker.grid: tables`` keeps only the models the ensembles name (they are members, not
    rows of a table)."""
    b = cfg["linear_baseline"]
    if not b["enabled"]:
        return []
    encoder = b["encoder"]  # resolve() fills it
    grid = [Model(ix, LINEAR_MATCHER, linear_input_name(kind, encoder), neg, comb)
            for ix in b["indexer"] for kind in b["inputs"] for neg in b["negatives"] for comb in b["combine"]]
    if cfg["ranker"].get("grid", "full") == "full":
        return grid
    named = _ensemble_member_names(cfg)
    return [m for m in grid if m.indexer == b["indexer"][0] or m.name in named]


def ranker_inputs(cfg: dict) -> list[str]:
    """Every ranker-input name used by the grid (for the Snakefile's wildcard constraints)."""
    return list(dict.fromkeys(list(RANKER_INPUTS) + [m.input for m in baseline_models(cfg)]))


def xr_models(cfg: dict) -> list[Model]:
    """XR-Transformer rows: its matcher over the ``xr_transformer.indexer`` tree, then the same rankers."""
    xr, r = cfg["xr_transformer"], cfg["ranker"]
    if r.get("grid", "full") == "tables":  # its one Table 3 row: the headline ranker
        return [Model(xr["indexer"], XR_MATCHER_PREFIX + enc, *headline_ranker(cfg)) for enc in xr["encoders"]]
    return [Model(xr["indexer"], XR_MATCHER_PREFIX + enc, inp, neg, comb)
            for enc in xr["encoders"] for inp in r["inputs"] for neg in r["negatives"] for comb in r["combine"]]


def aplc_models(cfg: dict) -> list[str]:
    """APLC rows (end to end, no indexer or ranker): ``aplc-{encoder}``."""
    return [APLC_PREFIX + enc for enc in cfg["aplc"]["encoders"]]


def peer_models(cfg: dict) -> list[str]:
    """The peers' rows (no indexer or ranker of ours): the system's name."""
    return list(cfg["peers"]["systems"])


def models(cfg: dict) -> list[Model]:
    return transformer_models(cfg) + baseline_models(cfg) + xr_models(cfg)


def describe_model(cfg: dict, name: str) -> Model:
    """The grid columns of a model name (an APLC model or a peer has only its matcher column)."""
    if name in aplc_models(cfg) or name in peer_models(cfg):
        return Model("", name, "", "", "")
    return Model.parse(name)


def xr_params(cfg: dict) -> dict:
    """The XRParams of the config (without the workflow's keys ``encoders``, ``indexer``, ``shortlist``)."""
    return {k: v for k, v in cfg["xr_transformer"].items() if k not in ("encoders", "indexer", "shortlist")}


def uses_xr_shortlist(cfg: dict, matcher: str) -> bool:
    """Whether ``matcher``'s rankers take their clusters from the linear tree over [TF-IDF ; its
    embedding] (``xr_transformer.shortlist: linear``) rather than from its own heads."""
    return matcher.startswith(XR_MATCHER_PREFIX) and cfg["xr_transformer"].get("shortlist") == "linear"


def uses_knn_shortlist(cfg: dict, dataset: str, matcher: str) -> bool:
    """Whether the transformer matcher ``matcher`` (an encoder's) gives its rankers the shortlist its
    nearest training documents vote for (``matcher.knn``, rule knn_shortlist) rather than its head's."""
    return matcher in cfg["encoders"] and bool(matcher_params(cfg, dataset, matcher).get("knn"))


def aplc_params(cfg: dict, dataset: str, encoder: str) -> dict:
    """APLCParams: the encoder's merged matcher settings (its learning_rate as the encoder's), then the
    aplc section; top_k from the ranker's."""
    m = matcher_params(cfg, dataset, encoder)
    params = {k: m[k] for k in _APLC_FROM_MATCHER if k in m}
    if "learning_rate" in m:
        params["encoder_learning_rate"] = m["learning_rate"]
    params["top_k"] = cfg["ranker"]["top_k"]
    params.update({k: v for k, v in cfg["aplc"].items() if k != "encoders"})
    return params


def ensemble_members(cfg: dict, ensemble: str) -> list[str]:
    members = cfg["ensembles"][ensemble]["models"]
    if "all" in members:
        return [m.name for m in transformer_models(cfg)]
    return list(members)


def matcher_params(cfg: dict, dataset: str, encoder: str) -> dict:
    """Matcher hyperparameters: global < per dataset < per encoder, plus the global seed."""
    params = {"seed": cfg["seed"]}
    params.update(cfg["matcher"])
    params.update(cfg["datasets"][dataset].get("matcher", {}))
    params.update(cfg["encoders"][encoder].get("matcher", {}))
    return params


def n_clusters(cfg: dict, dataset: str):
    """K for a dataset: its own setting, else the global one, else None (the depth rule)."""
    k = cfg["datasets"][dataset].get("n_clusters")
    return k if k is not None else cfg["indexing"]["n_clusters"]
