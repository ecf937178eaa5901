"""The config schema and the model grid that the Snakefile expands."""
import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from xmc import config as xc

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_expands_to_the_issue_grid():
    jsonschema.validate(DEFAULT, SCHEMA)
    cfg = xc.resolve(DEFAULT)
    names = [m.name for m in xc.models(cfg)]
    assert "pifa-tfidf.minilm.tfidf+neural.tfn+man.noop" in names
    assert "pifa-tfidf.linear.tfidf.tfn+man.noop" in names  # the phi_tfidf + linear baseline
    assert {m.indexer for m in xc.transformer_models(cfg)} == {"pifa-tfidf", "text-emb", "pifa-neural"}
    members = xc.ensemble_members(cfg, "x-transformer")
    assert members == [f"{ix}.minilm.tfidf+neural.tfn+man.l3-hinge" for ix in DEFAULT["indexers"]]
    assert set(members) < set(names)


@pytest.mark.parametrize("path, value", [
    (("tfidf", "ngram_rnage"), [1, 2]),              # unknown key
    (("matcher", "learning_rate"), -1e-5),          # negative learning rate
    (("ranker", "negatives"), ["random"]),          # unknown negative sampling
    (("ensembles", "x-transformer", "method"), "vote"),
    (("matcher", "knn"), {"k": 400, "power": 4}),   # the head's weight left out
    (("matcher", "knn"), {"k": 400, "power": 4, "head_weight": 1.5}),
])
def test_schema_rejects_bad_values(path, value):
    cfg = copy.deepcopy(DEFAULT)
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, SCHEMA)


def test_all_means_every_transformer_model():
    cfg = copy.deepcopy(DEFAULT)
    cfg["ensembles"]["x-transformer"]["models"] = ["all"]
    cfg = xc.resolve(cfg)
    assert xc.ensemble_members(cfg, "x-transformer") == [m.name for m in xc.transformer_models(cfg)]


def test_cross_references_are_checked():
    cfg = copy.deepcopy(DEFAULT)
    cfg["ensembles"]["x-transformer"]["models"] = ["no-such-model"]
    with pytest.raises(xc.ConfigError, match="no-such-model"):
        xc.resolve(cfg)
    cfg = copy.deepcopy(DEFAULT)
    cfg["matchers"] = ["bert"]
    with pytest.raises(xc.ConfigError, match="bert"):
        xc.resolve(cfg)


@pytest.mark.parametrize("n_clusters, top_b, message", [(48, 10, "power of two"), (8, 10, "top_b = 10")])
def test_cluster_count_is_checked_at_start_up(n_clusters, top_b, message):
    cfg = copy.deepcopy(DEFAULT)
    cfg["indexing"]["n_clusters"] = n_clusters
    cfg["matcher"]["top_b"] = top_b
    with pytest.raises(xc.ConfigError, match=message):
        xc.resolve(cfg)


def test_encoders_are_checked(tmp_path):
    cfg = xc.resolve(copy.deepcopy(DEFAULT))
    xc.check_encoders(cfg)  # the packaged MiniLM resolves offline
    for bad, message in ((str(tmp_path / "missing-model"), "does not exist"),
                         (str(tmp_path), "config.json"),
                         ("not a valid id!", "neither")):
        cfg["encoders"]["minilm"]["model"] = bad
        with pytest.raises(xc.ConfigError, match=message):
            xc.check_encoders(cfg)


def test_an_encoder_folder_without_readable_weights_fails_at_start_up(tmp_path, tiny_encoder):
    """A half-copied model folder used to pass start-up and fail as a transformers traceback."""
    import shutil

    cfg = xc.resolve(copy.deepcopy(DEFAULT))
    folder = Path(shutil.copytree(tiny_encoder("bert"), tmp_path / "bert"))
    cfg["encoders"]["minilm"]["model"] = str(folder)
    xc.check_encoders(cfg)
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    for broken, message in ((b"not weights at all", "is not a readable safetensors file"),
                            (good[:8] + b"{garbage", "is not a readable safetensors file")):
        weights.write_bytes(broken)
        with pytest.raises(xc.ConfigError, match=rf"^encoders.minilm.model: .*{message}"):
            xc.check_encoders(cfg)
    weights.unlink()
    with pytest.raises(xc.ConfigError, match="has config.json but no weights"):
        xc.check_encoders(cfg)


def test_linear_baselines_on_several_indexers():
    """The first linear_baseline.indexer holds Table 3's rows; on the others, ranker.grid: tables
    builds only the linear models an ensemble names, grid: full all of them."""
    raw = copy.deepcopy(DEFAULT)
    raw["linear_baseline"].update(indexer=["pifa-tfidf", "text-emb", "pifa-neural"], inputs=["tfidf", "char"])
    member = "text-emb.linear.char.tfn+man.noop"
    raw["ensembles"]["word-char"] = {"method": "average", "models": ["pifa-tfidf.linear.tfidf.tfn+man.noop", member]}
    jsonschema.validate(raw, SCHEMA)
    full = [m.name for m in xc.baseline_models(xc.resolve(copy.deepcopy(raw)))]
    assert len(full) == 3 * 2 and member in full and "pifa-neural.linear.tfidf.tfn+man.noop" in full
    raw["ranker"]["grid"] = "tables"
    cfg = xc.resolve(copy.deepcopy(raw))
    assert [m.name for m in xc.baseline_models(cfg)] == [
        "pifa-tfidf.linear.tfidf.tfn+man.noop", "pifa-tfidf.linear.char.tfn+man.noop", member]
    from xmc import paper
    assert paper.table3_models(cfg)["phi_tfidf + linear"] == "pifa-tfidf.linear.tfidf.tfn+man.noop"
    # a member on an indexer the baselines do not list is not a model of the grid
    raw["linear_baseline"]["indexer"] = "pifa-tfidf"
    with pytest.raises(xc.ConfigError, match="ensembles.word-char.models: 'text-emb.linear.char"):
        xc.resolve(copy.deepcopy(raw))
    raw["linear_baseline"]["indexer"] = ["pifa-tfidf", "no-such-indexer"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, SCHEMA)
    with pytest.raises(xc.ConfigError, match="linear_baseline.indexer: 'no-such-indexer' is not among indexers"):
        xc.resolve(copy.deepcopy(raw))


def test_n_clusters_larger_than_the_labels_is_rejected():
    cfg = copy.deepcopy(DEFAULT)
    cfg["indexing"]["n_clusters"] = 64
    cfg = xc.resolve(cfg)
    xc.check_n_clusters(cfg, "eurlex57k-sample", 64)
    with pytest.raises(xc.ConfigError, match=r"^indexing.n_clusters: K = 64 is larger than the number of labels \(63\)"):
        xc.check_n_clusters(cfg, "eurlex57k-sample", 63)
    # K from the depth rule (2 for 63 labels) against ranker.shards, once the data is prepared
    cfg = copy.deepcopy(DEFAULT)
    cfg["ranker"]["shards"] = 4
    cfg = xc.resolve(cfg)
    xc.check_n_clusters(cfg, "eurlex57k-sample", 400)  # K = 8
    with pytest.raises(xc.ConfigError, match=r"ranker.shards = 4 is larger than the K = 2 clusters"):
        xc.check_n_clusters(cfg, "eurlex57k-sample", 63)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["tfidf"].update(ngram_range=[2, 1]), r"tfidf.ngram_range: \[2, 1\] has its lower bound above"),
    (lambda c: c["tfidf"].update(min_df=0.9, max_df=0.5), r"tfidf.min_df \(0.9\) is above tfidf.max_df \(0.5\)"),
    (lambda c: c["tfidf"].update(min_df=50, max_df=10), r"tfidf.min_df \(50\) is above tfidf.max_df \(10\)"),
    (lambda c: c["tfidf"].update(max_df=1.5), r"tfidf.max_df: 1.5 is a float above 1.0"),
    (lambda c: c.setdefault("tfidf_char", {}).update(ngram_range=[5, 3]),
     r"tfidf_char.ngram_range: \[5, 3\] has its lower bound above"),
    (lambda c: c["datasets"]["eurlex57k-sample"].update(encoding="no-such-codec"),
     r"datasets.eurlex57k-sample.encoding: unknown encoding 'no-such-codec'"),
    (lambda c: c["datasets"]["eurlex57k-sample"].update(texts_encoding="no-such-codec"),
     r"datasets.eurlex57k-sample.texts_encoding: unknown encoding"),
    (lambda c: c["datasets"]["eurlex57k-sample"].update(label_separator=","),
     r"label_separator applies to the attentionxml format only"),
    (lambda c: c["indexing"].update(n_clusters=48), r"^indexing.n_clusters: K = 48 \(dataset eurlex57k-sample\) must be a power of two"),
    (lambda c: c["datasets"]["eurlex57k-sample"].update(n_clusters=48), r"^datasets.eurlex57k-sample.n_clusters: K = 48"),
])
def test_config_errors_found_at_start_up(change, message):
    """Each of these used to pass start-up and fail inside a job (or name the wrong key)."""
    cfg = copy.deepcopy(DEFAULT)
    change(cfg)
    with pytest.raises(xc.ConfigError, match=message):
        xc.resolve(cfg)


def test_reader_options_only_name_what_differs_from_the_defaults():
    assert xc.reader_options({"format": "attentionxml", "encoding": "utf-8", "texts_encoding": "utf-8",
                              "label_separator": None, "control_characters": "error"}) == {"encoding": "utf-8"}
    assert xc.reader_options({"format": "attentionxml", "encoding": "latin-1", "texts_encoding": "cp1252",
                              "label_separator": ",", "control_characters": "replace"}) == {
        "encoding": "latin-1", "text_encoding": "cp1252", "label_separator": ",", "control_characters": "replace"}


def test_matcher_params_layering():
    cfg = copy.deepcopy(DEFAULT)
    cfg["datasets"]["eurlex57k-sample"]["matcher"] = {"max_steps": 7, "batch_size": 4}
    cfg["encoders"]["minilm"]["matcher"] = {"batch_size": 2}
    params = xc.matcher_params(xc.resolve(cfg), "eurlex57k-sample", "minilm")
    assert params["max_steps"] == 7 and params["batch_size"] == 2
    assert params["learning_rate"] == DEFAULT["matcher"]["learning_rate"]


def test_model_name_round_trip():
    m = xc.Model("text-emb", "minilm", "tfidf+neural", "tfn+man", "l3-hinge")
    assert xc.Model.parse(m.name) == m
    with pytest.raises(xc.ConfigError):
        xc.Model.parse("a.b.c")


def test_ranker_shards_default_and_bounds():
    assert xc.resolve(DEFAULT)["ranker"]["shards"] == 1
    cfg = copy.deepcopy(DEFAULT)
    cfg["indexing"]["n_clusters"] = 4
    cfg["matcher"]["top_b"] = 2
    cfg["ranker"]["shards"] = 4
    jsonschema.validate(cfg, SCHEMA)
    assert xc.resolve(cfg)["ranker"]["shards"] == 4
    cfg["ranker"]["shards"] = 8
    with pytest.raises(xc.ConfigError, match=r"ranker.shards = 8 is larger than K = 4 \(indexing.n_clusters\)"):
        xc.resolve(cfg)
    cfg["ranker"]["shards"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, SCHEMA)


def test_each_allowed_value_has_one_home():
    """xmc.vocabulary declares each allowed value once: the schema's enums equal its tuples, and the
    names config and the estimators check values against are those very tuples, not copies."""
    from xmc import ensemble, features, peers, ranker, selection, training, vocabulary as V
    from xmc.matcher import transformer

    enum = lambda name: tuple(SCHEMA["definitions"][name]["enum"])
    assert enum("indexer") == V.INDEXERS
    assert enum("ranker_input") == V.RANKER_INPUTS
    assert enum("linear_input") == V.LINEAR_INPUTS
    assert enum("negatives") == V.NEGATIVES
    assert enum("combine") == V.COMBINE
    assert enum("ensemble_method") == (V.AUTO, *V.ENSEMBLE_METHODS)
    assert enum("pooling") == V.POOLINGS
    assert enum("precision") == V.PRECISIONS
    assert tuple(SCHEMA["definitions"]["matcher_params"]["properties"]["predict_precision"]["enum"]) == V.PREDICT_PRECISIONS
    assert tuple(SCHEMA["definitions"]["tfidf_params"]["properties"]["analyzer"]["enum"]) == V.ANALYZERS
    assert enum("peer") == V.PEERS
    assert tuple(SCHEMA["properties"]["paper"]["properties"]["roles"]["properties"]) == V.PAPER_ROLES
    same = [(xc.INDEXERS, V.INDEXERS), (xc.RANKER_INPUTS, V.RANKER_INPUTS), (xc.LINEAR_INPUTS, V.LINEAR_INPUTS),
            (xc.NEGATIVES, V.NEGATIVES), (ranker.NEGATIVES, V.NEGATIVES), (xc.COMBINE, V.COMBINE),
            (ranker.COMBINE_METHODS, V.COMBINE), (ensemble.ENSEMBLE_METHODS, V.ENSEMBLE_METHODS),
            (selection.AUTO, V.AUTO), (xc.PEERS, V.PEERS), (peers.SYSTEMS, V.PEERS), (xc.PAPER_ROLES, V.PAPER_ROLES),
            (training.PRECISIONS, V.PRECISIONS), (transformer.PRECISIONS, V.PRECISIONS),
            (transformer.POOLINGS, V.POOLINGS), (transformer.PREDICT_PRECISIONS, V.PREDICT_PRECISIONS),
            (features.ANALYZERS, V.ANALYZERS)]
    assert all(alias is value for alias, value in same)


def _vocabulary_copies(source: str) -> list[tuple[int, tuple]]:
    """(line, values) of each literal tuple, list or set of strings in ``source`` holding the same
    values as a tuple of xmc.vocabulary (in any order)."""
    import ast

    from xmc import vocabulary as V

    declared = {frozenset(v) for v in vars(V).values() if isinstance(v, tuple) and len(v) > 1}
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) > 1 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            values = tuple(e.value for e in node.elts)
            if frozenset(values) in declared:
                found.append((node.lineno, values))
    return found


def test_no_module_of_xmc_copies_a_vocabulary_tuple():
    """A second literal of an allowed-value tuple would drift from the first: xmc/ holds each once,
    in xmc/vocabulary.py, which itself imports nothing from xmc (anything may import it)."""
    import ast

    xmc_dir = REPO / "xmc"
    assert _vocabulary_copies('ok = ("tfn", "man")\nCOPY = ["man", "tfn+man", "tfn"]\n') == [(2, ("man", "tfn+man", "tfn"))]
    copies = {str(p.relative_to(REPO)): found for p in sorted(xmc_dir.rglob("*.py")) if p.name != "vocabulary.py"
              for found in [_vocabulary_copies(p.read_text(encoding="utf-8"))] if found}
    assert copies == {}
    tree = ast.parse((xmc_dir / "vocabulary.py").read_text(encoding="utf-8"))
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [ast.unparse(n) for n in imports] == ["from __future__ import annotations"]


def test_schema_defaults_are_the_declared_defaults_of_fixed_keys():
    """Fixed keys' defaults, nested by section; a section without any is left out; a section's
    default as a whole is taken as is; map entries and shared definitions are not walked."""
    schema = {
        "definitions": {"params": {"type": "object", "properties": {"a": {"type": "integer", "default": 1}}}},
        "properties": {
            "seed": {"type": "integer", "default": 0},
            "section": {"type": "object", "properties": {
                "n": {"type": ["integer", "null"], "default": None},
                "names": {"type": "array", "default": ["x"]},
                "free": {"type": "string"},
                "inner": {"type": "object", "properties": {"k": {"default": 2}}}}},
            "no_defaults": {"type": "object", "properties": {"free": {"type": "string"}}},
            "whole": {"$ref": "#/definitions/params", "default": {"a": 3}},
            "shared": {"$ref": "#/definitions/params"},
            "entries": {"type": "object", "additionalProperties": {
                "type": "object", "properties": {"encoding": {"type": "string", "default": "utf-8"}}}},
            "empty_map": {"type": "object", "default": {}},
        },
    }
    found = xc.schema_defaults(schema)
    assert found == {"seed": 0, "section": {"n": None, "names": ["x"], "inner": {"k": 2}}, "whole": {"a": 3},
                     "empty_map": {}}
    found["section"]["names"].append("y")  # a copy: resolving a config never edits the schema
    assert schema["properties"]["section"]["properties"]["names"]["default"] == ["x"]


def test_config_defaults_come_from_the_schema_alone():
    """xmc.config.DEFAULTS is the schema's defaults, so that changing a `default:` changes the
    resolved config (and no default lives only in Python)."""
    assert xc.DEFAULTS == xc.schema_defaults(SCHEMA)
    changed = copy.deepcopy(SCHEMA)
    changed["properties"]["ranker"]["properties"]["top_k"]["default"] = 30
    assert xc.schema_defaults(changed)["ranker"]["top_k"] == 30
    assert xc.resolve(copy.deepcopy(DEFAULT))["ranker"]["top_k"] == SCHEMA["properties"]["ranker"]["properties"]["top_k"]["default"]


def test_config_defaults_are_the_library_defaults():
    """config.DEFAULTS repeats the estimators' defaults the workflow passes on: they must agree."""
    import dataclasses

    from xmc.features import TfidfParams
    from xmc.indexing import IndexerParams
    from xmc.matcher.linear import LinearMatcherParams
    from xmc.matcher.transformer import MatcherParams
    from xmc.matcher.xr import XRParams
    from xmc.ranker import RankerParams, RankerPredParams

    d = xc.DEFAULTS
    tfidf = {f.name: f.default for f in dataclasses.fields(TfidfParams)}
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in tfidf.items() if k in d["tfidf"]} == d["tfidf"]
    xr = {f.name: f.default for f in dataclasses.fields(XRParams)}
    assert {k: d["xr_transformer"][k] for k in xr} == xr
    assert MatcherParams().top_b == d["matcher"]["top_b"]
    assert IndexerParams().max_iter == d["indexing"]["max_iter"]
    assert IndexerParams().n_clusters == d["indexing"]["n_clusters"]
    ranker = RankerParams()
    assert [ranker.C, ranker.threshold] == [d["ranker"]["C"], d["ranker"]["threshold"]]
    assert ranker.negatives in d["ranker"]["negatives"]
    assert RankerPredParams().top_k == d["ranker"]["top_k"]
    linear = LinearMatcherParams()
    assert [linear.C, linear.threshold, linear.branching] == [d["linear_baseline"][k] for k in ("C", "threshold", "branching")]


# ---- start-up checks: one line, the key named ---------------------------------------------------
@pytest.mark.parametrize("change, message", [
    (lambda c: c["matcher"].update(max_steps=10.0), r"^matcher.max_steps: 10.0 must be an integer"),
    (lambda c: c.update(seed=1e23), r"^seed: 1e\+23 is greater than the maximum of 4294967295"),
    (lambda c: c.update(seed=10 ** 23), r"^seed: 100000000000000000000000 is greater than the maximum of 4294967295"),
    (lambda c: c.update(seed="1e23"), r"^seed: '1e23' is not of type 'integer'"),
    (lambda c: c["matcher"].update(device="banana"), r"^matcher.device: 'banana' does not match"),
    (lambda c: c.update({"typo key": 1}), r"^\(top level\): Additional properties are not allowed \('typo key' was unexpected\)"),
    (lambda c: c["datasets"]["eurlex57k-sample"].update(max_extracted_gb=0), r"^datasets.eurlex57k-sample.max_extracted_gb: 0"),
])
def test_schema_errors_are_one_line_naming_the_key(change, message):
    cfg = copy.deepcopy(DEFAULT)
    change(cfg)
    with pytest.raises(xc.ConfigError, match=message) as e:
        xc.check_schema(cfg, SCHEMA)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400
    xc.check_schema(copy.deepcopy(DEFAULT), SCHEMA)  # the default passes


@pytest.mark.parametrize("name", ["logs", "tables", "figures", "benchmarks", "Logs"])
def test_dataset_names_the_run_uses_under_results_are_refused(name):
    cfg = copy.deepcopy(DEFAULT)
    cfg["datasets"] = {name: cfg["datasets"]["eurlex57k-sample"]}
    with pytest.raises(xc.ConfigError, match=rf"^datasets.{name}: '{name}' is a folder the run writes under results/"):
        xc.resolve(cfg)


def test_the_reserved_names_are_the_folders_the_rules_write_under_results():
    """Every folder a rule writes directly under results/ (not under a dataset) is refused as a
    dataset name, so a new such folder cannot be forgotten."""
    import re

    text = "".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    folders = set(re.findall(r'f"\{R\}/([a-z_-]+)/', text))
    assert folders == set(xc.RESERVED_DATASET_NAMES)


def test_max_length_beyond_the_models_positions_fails_at_start_up(tiny_encoder):
    cfg = xc.resolve(copy.deepcopy(DEFAULT))
    xc.check_encoders(cfg)  # MiniLM: 512 positions
    cfg["encoders"]["minilm"]["max_length"] = 100000
    with pytest.raises(xc.ConfigError, match=r"^encoders.minilm.max_length: 100000 tokens is more than the 512 positions"):
        xc.check_encoders(cfg)
    for family, positions in (("bert", 288), ("roberta", 288)):  # RoBERTa: 290 embeddings, 2 for padding
        cfg["encoders"]["minilm"].update(model=str(tiny_encoder(family)), max_length=positions)
        xc.check_encoders(cfg)
        cfg["encoders"]["minilm"]["max_length"] = positions + 1
        with pytest.raises(xc.ConfigError, match=rf"more than the {positions} positions"):
            xc.check_encoders(cfg)
    cfg["encoders"]["minilm"].update(model=str(tiny_encoder("xlnet")), max_length=100000)
    xc.check_encoders(cfg)  # relative positions: no bound


def test_an_unreachable_hub_id_fails_once_fast_naming_the_key(monkeypatch, tmp_path):
    import time

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    cfg = xc.resolve(copy.deepcopy(DEFAULT))
    cfg["encoders"]["minilm"]["model"] = "some-org/not-cached-model"
    xc.check_encoders(cfg)  # a dry run: form only, no network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(xc.ConfigError, match=r"^encoders.minilm.model: hub id 'some-org/not-cached-model' is not "
                                             r"in the local Hugging Face cache and HF_HUB_OFFLINE is set; .*local model folder"):
        xc.check_encoders(cfg, network=True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: no network
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(xc.ConfigError, match=r"^encoders.minilm.model: hub id 'some-org/not-cached-model' cannot "
                                             r"be reached .*HF_HUB_OFFLINE=1"):
        xc.check_encoders(cfg, network=True)
    assert time.monotonic() - start < 30
