"""xmc.plan: the files and settings the workflow's input functions hand to the rules."""
from pathlib import Path

import pytest
import yaml

from xmc import config as xc
from xmc import plan

REPO = Path(__file__).resolve().parents[1]
DS = "eurlex57k-sample"  # the default config's dataset


def cfg(edit=None) -> dict:
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw["linear_baseline"]["inputs"] = ["tfidf", "pre", "tfidf+fnt", "char", "tfidf+char"]
    raw["xr_transformer"]["encoders"] = ["minilm"]
    raw["aplc"]["encoders"] = ["minilm"]
    raw["ensembles"]["with-aplc"] = {"method": "rank_average", "models": ["aplc-minilm",
                                                                         "pifa-tfidf.linear.tfidf.tfn+man.noop"]}
    if edit:
        edit(raw)
    return xc.resolve(raw)


def test_feature_files_of_each_ranker_input():
    r, ds = "results", "d"
    assert plan.feature_files(r, ds, "pifa-tfidf", "minilm", "tfidf") == {
        "X_train": "results/d/tfidf/X.train.npz", "X_valid": "results/d/tfidf/X.valid.npz",
        "X_test": "results/d/tfidf/X.test.npz"}
    assert plan.feature_files(r, ds, "pifa-tfidf", "minilm", "tfidf", splits=("train",)) == {
        "X_train": "results/d/tfidf/X.train.npz"}
    both = plan.feature_files(r, ds, "text-emb", "minilm", "tfidf+neural")
    assert both["emb_train"] == "results/d/matcher/text-emb/minilm/emb.train.npy" and "X_test" in both
    pre = plan.feature_files(r, ds, "pifa-tfidf", "linear", xc.linear_input_name("pre", "minilm"))
    assert pre == {"emb_train": "results/d/pretrained/minilm/emb.train.npy",
                   "emb_valid": "results/d/pretrained/minilm/emb.valid.npy",
                   "emb_test": "results/d/pretrained/minilm/emb.test.npy"}
    fnt = plan.feature_files(r, ds, "pifa-tfidf", "linear", xc.linear_input_name("tfidf+fnt", "minilm"))
    assert fnt["emb_test"] == "results/d/matcher/pifa-tfidf/minilm/emb.test.npy" and "X_train" in fnt
    assert plan.feature_files(r, ds, "pifa-tfidf", "linear", "char", splits=("train", "test")) == {
        "Xc_train": "results/d/tfidf-char/X.train.npz", "Xc_test": "results/d/tfidf-char/X.test.npz"}
    assert set(plan.feature_files(r, ds, "text-emb", "linear", "tfidf+char")) == {
        "X_train", "X_valid", "X_test", "Xc_train", "Xc_valid", "Xc_test"}
    with pytest.raises(ValueError, match="no neural embeddings"):
        plan.feature_files(r, ds, "pifa-tfidf", "linear", "tfidf+neural")
    with pytest.raises(ValueError, match="belongs to the linear baselines"):
        plan.feature_files(r, ds, "pifa-tfidf", "minilm", xc.linear_input_name("pre", "minilm"))


def test_ranker_input_files_take_the_clusters_from_the_matcher_or_the_xr_shortlist():
    c = cfg()
    own = plan.ranker_input_files(c, "results", DS, "pifa-tfidf", "minilm", "tfidf+neural", "test")
    assert own["M_test"] == f"results/{DS}/matcher/pifa-tfidf/minilm/topb.test.npz" and "M_train" not in own
    assert "X_test" in own and "X_train" not in own and "X_valid" not in own  # the split's features only
    valid = plan.ranker_input_files(c, "results", DS, "pifa-tfidf", "minilm", "tfidf+neural", "valid")
    assert valid["M_valid"] == f"results/{DS}/matcher/pifa-tfidf/minilm/topb.valid.npz"
    assert valid["emb_valid"] == f"results/{DS}/matcher/pifa-tfidf/minilm/emb.valid.npy" and "X_test" not in valid
    xr = plan.ranker_input_files(c, "results", DS, "pifa-tfidf", "xr-transformer-minilm", "tfidf", "train", "tfn+man")
    assert xr["M_train"] == f"results/{DS}/matcher/pifa-tfidf/xr-transformer-minilm/shortlist/topb.train.npz"
    neural = cfg(lambda raw: raw["xr_transformer"].update(shortlist="neural"))
    xr = plan.ranker_input_files(neural, "results", DS, "pifa-tfidf", "xr-transformer-minilm", "tfidf", "train", "man")
    assert xr["M_train"] == f"results/{DS}/matcher/pifa-tfidf/xr-transformer-minilm/topb.train.npz"
    pre = xc.linear_input_name("pre", "minilm")
    assert plan.ranker_input_files(c, "results", DS, "pifa-tfidf", "linear", pre, "test")["M_test"] == \
        f"results/{DS}/matcher/pifa-tfidf/linear.{pre}/topb.test.npz"
    # matcher.knn: the flat matcher's rankers read the nearest documents' vote; XR and linear keep theirs
    knn = {"k": 10, "power": 4, "head_weight": 0.1}
    k = cfg(lambda raw: (raw["matcher"].update(knn=knn), raw["xr_transformer"].update(shortlist="neural")))
    for split in ("train", "test"):
        assert plan.ranker_input_files(k, "results", DS, "text-emb", "minilm", "tfidf", split, "man")[f"M_{split}"] \
            == f"results/{DS}/matcher/text-emb/minilm/knn/topb.{split}.npz"
    assert plan.ranker_input_files(k, "results", DS, "pifa-tfidf", "xr-transformer-minilm", "tfidf", "test")["M_test"] \
        == f"results/{DS}/matcher/pifa-tfidf/xr-transformer-minilm/topb.test.npz"
    assert plan.ranker_input_files(k, "results", DS, "pifa-tfidf", "linear", "tfidf", "test")["M_test"] \
        == f"results/{DS}/matcher/pifa-tfidf/linear/topb.test.npz"
    assert plan.shortlist_files(k, "results", DS, "pifa-tfidf.minilm.tfidf.tfn+man.noop", "valid")[0] \
        == f"results/{DS}/matcher/pifa-tfidf/minilm/knn/topb.valid.npz"
    # per dataset: another dataset's own matcher settings can turn it off
    per = cfg(lambda raw: raw["datasets"][DS].update(matcher={"knn": knn}))
    assert xc.uses_knn_shortlist(per, DS, "minilm") and not xc.uses_knn_shortlist(c, DS, "minilm")
    assert not xc.uses_knn_shortlist(per, DS, "linear") and not xc.uses_knn_shortlist(per, DS, "xr-transformer-minilm")


def test_linear_input_names_round_trip():
    c = cfg()
    inputs = {m.input for m in xc.baseline_models(c)}
    assert inputs == {"tfidf", "pre-minilm", "tfidf+fnt-minilm", "char", "tfidf+char"}
    for name in inputs:
        kind, encoder = xc.parse_linear_input(name)
        assert xc.linear_input_name(kind, encoder) == name
    assert xc.parse_linear_input("char") == ("char", None)
    with pytest.raises(xc.ConfigError, match="not a linear baseline input"):
        xc.parse_linear_input("char-minilm")
    assert set(xc.ranker_inputs(c)) >= {"char", "tfidf+char"}


def test_a_tfn_ranker_trains_without_the_matchers_predictions():
    """Only MAN negatives read the training split's top-b: a TFN ranker's job does not wait for it."""
    c = cfg()
    tfn = plan.ranker_input_files(c, "results", DS, "pifa-tfidf", "minilm", "tfidf", "train", "tfn")
    assert "M_train" not in tfn and "M_test" not in tfn and "X_train" in tfn and "X_test" not in tfn
    man = plan.ranker_input_files(c, "results", DS, "pifa-tfidf", "minilm", "tfidf", "train", "tfn+man")
    assert set(man) - set(tfn) == {"M_train"}
    with pytest.raises(ValueError, match="split must be"):
        plan.ranker_input_files(c, "results", DS, "pifa-tfidf", "minilm", "tfidf", "dev")


def test_model_description_of_a_model_and_of_an_ensemble():
    c = cfg()
    assert plan.model_description(c, "text-emb.minilm.tfidf+neural.tfn+man.l3-hinge") == {
        "indexer": "text-emb", "matcher": "minilm", "ranker_input": "tfidf+neural", "negatives": "tfn+man",
        "combine": "l3-hinge", "ensemble": ""}
    ens = plan.model_description(c, "x-transformer")
    assert ens["indexer"] == "pifa-tfidf+text-emb+pifa-neural" and ens["matcher"] == "minilm"
    assert ens["ensemble"] == "auto"
    # an auto ensemble's row is joined from the candidates its pick keeps
    candidates = plan.member_descriptions(c, "x-transformer")
    assert list(candidates) == xc.ensemble_members(c, "x-transformer")
    two = plan.join_descriptions([candidates[m] for m in list(candidates)[1:]], "auto: average of 2")
    assert two["indexer"] == "text-emb+pifa-neural" and two["ensemble"] == "auto: average of 2"
    assert two["combine"] == "l3-hinge" and two["matcher"] == "minilm"
    assert plan.member_descriptions(c, "pifa-tfidf.linear.tfidf.tfn+man.noop") == {}
    # a nearest-neighbour shortlist is not the paper's head: the matcher column says so, on its dataset
    k = cfg(lambda raw: raw["datasets"][DS].update(matcher={"knn": {"k": 10, "power": 4, "head_weight": 0.1}}))
    assert plan.model_description(k, "text-emb.minilm.tfidf.tfn+man.noop", DS)["matcher"] == "minilm (knn)"
    assert plan.model_description(k, "text-emb.minilm.tfidf.tfn+man.noop")["matcher"] == "minilm"
    assert plan.model_description(k, "pifa-tfidf.linear.tfidf.tfn+man.noop", DS)["matcher"] == "linear"
    assert plan.model_description(k, "x-transformer", DS)["matcher"] == "minilm (knn)"
    assert {d["matcher"] for d in plan.member_descriptions(k, "x-transformer", DS).values()} == {"minilm (knn)"}


def test_bundles_skip_what_a_bundle_cannot_hold():
    c = cfg()
    names = {Path(b).name for b in plan.bundles(c, "results")}
    assert "x-transformer" in names and "pifa-tfidf.linear.tfidf.tfn+man.noop" in names
    assert "aplc-minilm" not in names and "with-aplc" not in names  # APLC, and an ensemble with it
    assert not {n for n in names if ".linear.pre-" in n or ".linear.tfidf+fnt-" in n}
    assert not {n for n in names if ".linear.char." in n or ".linear.tfidf+char." in n}  # no char vectorizer
    assert not {n for n in names if "xr-transformer" in n}  # the linear shortlist needs its encoder
    assert {Path(b).name for b in plan.bundles(cfg(lambda r: r["xr_transformer"].update(shortlist="neural")),
                                               "results")} >= {"pifa-tfidf.xr-transformer-minilm.tfidf+neural.tfn+man.noop"}
    assert len(names) == len(plan.bundles(c, "results"))  # one dataset
    # a nearest-neighbour shortlist: the bundle carries the training documents' embeddings
    knn = {"k": 10, "power": 4, "head_weight": 0.1}
    c_knn = cfg(lambda r: r["matcher"].update(knn=knn))
    assert {Path(b).name for b in plan.bundles(c_knn, "results")} == names
    model = "pifa-neural.minilm.tfidf+neural.tfn+man.noop"
    files = plan.export_inputs(c_knn, "results", DS, model)
    assert files["knn_memory"] == "results/eurlex57k-sample/matcher/pifa-neural/minilm/emb.train.npy"
    assert files["knn_targets"] == "results/eurlex57k-sample/prepared/Y.train.npz"
    assert plan.export_settings(c_knn, DS, model)["knn"] == knn
    assert "knn_memory" not in plan.export_inputs(c, "results", DS, model)
    assert plan.export_settings(c, DS, model)["knn"] is None
    assert plan.export_settings(c_knn, DS, "pifa-tfidf.linear.tfidf.tfn+man.noop")["knn"] is None
    assert "knn_pretrained_memory" not in files and "knn_pretrained" not in plan.export_settings(c_knn, DS, model)
    # partly sought by the pretrained encoder: the bundle also takes it and its phi_pre of the training documents
    c_pre = cfg(lambda r: r["matcher"].update(knn={**knn, "pretrained_weight": 0.7}))
    assert {Path(b).name for b in plan.bundles(c_pre, "results")} == names
    assert (plan.export_inputs(c_pre, "results", DS, model)["knn_pretrained_memory"]
            == "results/eurlex57k-sample/pretrained/minilm/emb.train.npy")
    settings = plan.export_settings(c_pre, DS, model)
    assert settings["knn_pretrained"] == {"model": c_pre["encoders"]["minilm"]["model"],
                                          "max_length": settings["max_length"],
                                          "precision": c_pre["matcher"].get("predict_precision")
                                          or c_pre["matcher"].get("precision", "fp32")}


def test_export_inputs_and_settings():
    c = cfg()
    linear = "pifa-tfidf.linear.tfidf.tfn+man.noop"
    files = plan.export_inputs(c, "results", DS, linear)
    assert files["matcher"] == "results/eurlex57k-sample/matcher/pifa-tfidf/linear/model.npz"
    assert files["ranker"] == "results/eurlex57k-sample/ranker/pifa-tfidf/linear/tfidf.tfn+man/model.npz"
    settings = plan.export_settings(c, DS, linear)
    assert settings["max_length"] is None and "linear_baseline" in settings["config"]
    neural = "pifa-neural.minilm.tfidf+neural.tfn+man.l3-hinge"
    assert plan.export_inputs(c, "results", DS, neural)["matcher"] == "results/eurlex57k-sample/matcher/pifa-neural/minilm/model"
    s = plan.export_settings(c, DS, neural)
    assert s["max_length"] == 64 and s["top_b"] == 10 and s["combine"] == "l3-hinge"
    assert "pifa_neural" in s["config"] and "text_emb" not in s["config"]
    ens = plan.export_inputs(c, "results", DS, "x-transformer")
    assert len(ens["members"]) == 3 and plan.export_settings(c, DS, "x-transformer")["kind"] == "ensemble"
    assert ens["selection"] == "results/eurlex57k-sample/selection/x-transformer.json"  # method auto
    assert ens["metrics"] == "results/eurlex57k-sample/metrics/test/x-transformer.json"
