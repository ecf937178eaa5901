"""The related systems in the config: off by default, their grid rows, their params and checks."""
import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from xmc import config as xc
from xmc.aplc import APLCParams
from xmc.matcher.xr import XRParams

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def enabled(**changes):
    config = copy.deepcopy(DEFAULT)
    config["xr_transformer"]["encoders"] = ["minilm"]
    config["aplc"]["encoders"] = ["minilm"]
    for section, values in changes.items():
        config[section].update(values)
    return config


def test_off_by_default():
    cfg = xc.resolve(DEFAULT)
    assert xc.xr_models(cfg) == [] and xc.aplc_models(cfg) == []
    assert not any("xr-transformer" in m.name for m in xc.models(cfg))
    assert xc.resolve({k: v for k, v in DEFAULT.items() if k not in ("xr_transformer", "aplc")})["aplc"] == {
        "encoders": []}


def test_enabled_rows_and_params():
    config = enabled()
    jsonschema.validate(config, SCHEMA)
    cfg = xc.resolve(config)
    names = [m.name for m in xc.models(cfg)]
    assert "pifa-tfidf.xr-transformer-minilm.tfidf+neural.tfn+man.noop" in names
    assert "pifa-tfidf.xr-transformer-minilm.tfidf+neural.tfn+man.l3-hinge" in names
    assert xc.aplc_models(cfg) == ["aplc-minilm"]
    assert xc.describe_model(cfg, "aplc-minilm").matcher == "aplc-minilm"
    assert xc.describe_model(cfg, names[0]) == xc.Model.parse(names[0])
    # the ensemble "all" stays X-Transformer's own models
    assert not any("xr-" in m for m in xc.ensemble_members(cfg, "x-transformer"))
    # the rankers of XR rows take PECOS's linear shortlist by default, X-Transformer's never do
    assert xc.uses_xr_shortlist(cfg, "xr-transformer-minilm") and not xc.uses_xr_shortlist(cfg, "minilm")
    assert not xc.uses_xr_shortlist(xc.resolve(enabled(xr_transformer={"shortlist": "neural"})),
                                    "xr-transformer-minilm")
    xr = XRParams.from_dict(xc.xr_params(cfg))
    assert xr.resolve(64, DEFAULT["matcher"]["max_steps"]) == ([16, 64], [50, 50])
    ap = APLCParams.from_dict(xc.aplc_params(cfg, "eurlex57k-sample", "minilm"))
    assert ap.max_steps == DEFAULT["matcher"]["max_steps"] and ap.pooling == "mean"
    assert ap.encoder_learning_rate == DEFAULT["matcher"]["learning_rate"]
    assert ap.top_k == DEFAULT["ranker"]["top_k"] and ap.proportions == [0.5, 0.5]


def test_aplc_can_join_an_ensemble():
    config = enabled()
    config["ensembles"]["mixed"] = {"method": "rank_average", "models": ["aplc-minilm"]}
    assert xc.ensemble_members(xc.resolve(config), "mixed") == ["aplc-minilm"]


@pytest.mark.parametrize("changes, message", [
    ({"xr_transformer": {"encoders": ["nope"]}}, "xr_transformer.encoders: 'nope' is not an encoder"),
    ({"aplc": {"encoders": ["nope"]}}, "aplc.encoders: 'nope' is not an encoder"),
    ({"xr_transformer": {"indexer": "text-emb"}, "indexers": None}, "xr_transformer.indexer"),
])
def test_bad_references(changes, message):
    config = enabled(**{k: v for k, v in changes.items() if v is not None and k != "indexers"})
    if "indexers" in changes:
        config["indexers"] = ["pifa-tfidf"]
    with pytest.raises(xc.ConfigError, match=message):
        xc.resolve(config)


def test_levels_must_end_with_a_configured_k():
    config = enabled(xr_transformer={"levels": [4, 16]})
    config["datasets"]["eurlex57k-sample"]["n_clusters"] = 32
    with pytest.raises(xc.ConfigError, match="must end with"):
        xc.resolve(config)


def test_schema_rejects_unknown_keys():
    config = enabled(aplc={"hiden_size": 3})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, SCHEMA)
