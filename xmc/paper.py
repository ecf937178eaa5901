"""The paper's published figures (Chang et al., KDD 2020, Tables 3 and 5) and where each of its
configurations lives in a resolved workflow config.

Dataset keys are those of ``config/paper.yaml``: ``eurlex-4k``, ``wiki10-31k``, ``amazoncat-13k``,
``wiki-500k``. Metrics are in percent. A figure the paper's Tables 3 and 5 do not give is
``None``.

Mapping rules (used by the table generator):

- The paper's encoders are *roles*: ``paper.roles`` in the config names the encoder that plays BERT,
  RoBERTa and XLNet. A Table 5 id whose role is not mapped, or whose models are not in the grid, is
  missing (``None``).
- Ids 0-6 are single models ``{indexer}.{encoder}.{input}.{negatives}.{paper.combine}``.
- Ids 7, 8, 9 are ensembles: the configured ensemble whose member set equals the id's models (7: the
  three indexers x XLNet; 8: pifa-neural x the three encoders; 9: the three indexers x the three
  encoders; all tfidf+neural, TFN+MAN). Where several ensembles have that member set, the first
  ``rank_average`` one (the paper's rule) wins, else the first in config order. An id whose roles
  collapse onto fewer distinct models (one encoder playing two roles) is missing: it would not be the
  paper's ensemble.
- Table 3 ``X-Transformer`` is id 9, else the best available ensemble in the paper's order of merit
  (id 7, then id 8: Table 5 ranks 7 above 8), else ``None``.
- Table 3 linear baselines are the models of ``linear_baseline.inputs`` (``tfidf``, ``pre``,
  ``tfidf+fnt``). The paper's baselines fed these features to Parabel; ours to the linear matcher and
  rankers of this workflow. ``AttentionXML`` is not a model of the grid (``None``).
- What ran is said beside the figures: :func:`table5_roles` names the encoder that played each of
  an id's roles ("XLNet role: minilm"), :func:`table3_notes` marks the Table 3 rows that are
  substitutes (an X-Transformer row that is not the paper's 9 models, phi_pre and phi_fnt from
  another encoder than XLNet, our linear matcher and rankers for Parabel, their top-b).
- The peers (``peers.systems``) are rows too: ``Parabel`` is omikuji (Parabel's algorithm with its
  published defaults), and ``XR-Linear (PECOS)`` a row of its own, without published figures;
  without the peers both are ``None``.
"""
from __future__ import annotations

from xmc import config as xc

__all__ = ["FIGURE_GROUPS", "PAPER_TABLE3", "PAPER_TABLE5", "TABLE3_ROWS", "TABLE5_IDS", "model_groups",
           "role_marks", "table3_models", "table3_notes", "table5_models", "table5_roles"]

# which grid models make up each Table 5 id: config.py's (it decides which rankers ranker.grid:
# tables trains), used here under the names this module always had
_TABLE5_GRID = xc.TABLE5_GRID
table5_members = xc.table5_members

# Table 3: row label -> dataset -> (P@1, P@3, P@5)
PAPER_TABLE3: dict[str, dict[str, tuple[float | None, float | None, float | None]]] = {
    "X-Transformer": {
        "eurlex-4k": (87.22, 75.12, 62.90),
        "wiki10-31k": (88.51, 78.71, 69.62),
        "amazoncat-13k": (96.70, 83.85, 68.58),
        "wiki-500k": (77.28, 57.47, 45.31),
    },
    # The paper's baselines use Parabel on these features (phi_pre and phi_fnt from XLNet).
    "phi_pre + linear": {"eurlex-4k": (33.53, None, None)},
    "phi_tfidf + linear": {"eurlex-4k": (81.71, None, None)},
    "phi_fnt (+) phi_tfidf + linear": {"eurlex-4k": (84.09, None, None)},
    "Parabel": {"eurlex-4k": (82.12, None, None)},
    "AttentionXML": {"eurlex-4k": (87.12, None, None)},
}
XR_LINEAR_ROW = "XR-Linear (PECOS)"  # a peer's row; the paper predates it
TABLE3_ROWS = tuple(PAPER_TABLE3) + (XR_LINEAR_ROW,)

_METRICS = ("P@1", "P@3", "P@5", "R@1", "R@3", "R@5")
_EURLEX_TABLE5 = [
    # id: indexing, matcher, ranker input, negatives, P@1 P@3 P@5 R@1 R@3 R@5
    ("pifa-tfidf", "BERT", "tfidf", "TFN", 83.93, 70.59, 58.69, 17.05, 42.08, 57.14),
    ("pifa-tfidf", "BERT", "tfidf+neural", "TFN", 85.02, 71.83, 59.87, 17.21, 42.79, 58.30),
    ("pifa-tfidf", "BERT", "tfidf+neural", "TFN+MAN", 85.51, 72.95, 60.83, 17.32, 43.45, 59.21),
    ("pifa-tfidf", "RoBERTa", "tfidf+neural", "TFN+MAN", 85.33, 72.89, 60.79, 17.32, 43.39, 59.16),
    ("pifa-tfidf", "XLNet", "tfidf+neural", "TFN+MAN", 85.07, 72.75, 60.69, 17.25, 43.29, 59.01),
    ("pifa-neural", "XLNet", "tfidf+neural", "TFN+MAN", 84.81, 72.39, 60.38, 17.19, 42.98, 58.70),
    ("text-emb", "XLNet", "tfidf+neural", "TFN+MAN", 85.25, 72.76, 60.20, 17.29, 43.25, 58.54),
    ("all three", "XLNet", "tfidf+neural", "TFN+MAN", 86.55, 74.24, 61.96, 17.54, 44.16, 60.24),
    ("pifa-neural", "all three", "tfidf+neural", "TFN+MAN", 85.92, 73.43, 61.53, 17.40, 43.69, 59.86),
    ("all three", "all three", "tfidf+neural", "TFN+MAN", 87.22, 75.12, 62.90, 17.69, 44.73, 61.17),
]


def _row(values) -> dict:
    keys = ("indexing", "matcher", "ranker_input", "negatives") + _METRICS
    return dict(zip(keys, values))


# Table 5: dataset -> config id -> {indexing, matcher, ranker_input, negatives, P@1..R@5}
PAPER_TABLE5: dict[str, dict[int, dict]] = {
    "eurlex-4k": {i: _row(v) for i, v in enumerate(_EURLEX_TABLE5)},
    "wiki-500k": {9: _row(_EURLEX_TABLE5[9][:4] + (77.28, 57.47, 45.31, 25.48, 47.82, 57.95))},
}
TABLE5_IDS = tuple(range(10))

def _find_ensemble(cfg: dict, members: list[str]) -> str | None:
    wanted = set(members)
    matches = [name for name in cfg["ensembles"] if set(xc.ensemble_members(cfg, name)) == wanted]
    for name in matches:
        if cfg["ensembles"][name]["method"] == "rank_average":
            return name
    return matches[0] if matches else None


def table5_models(cfg: dict) -> dict[int, str | None]:
    """Table 5 id (0-9) -> the model (ids 0-6) or ensemble (7-9) name in the resolved config ``cfg``,
    None where the grid lacks it."""
    grid = {m.name for m in xc.transformer_models(cfg)}
    out = {}
    for config_id in TABLE5_IDS:
        members = table5_members(cfg, config_id)
        if members is None or not set(members) <= grid:
            out[config_id] = None
        elif len(_TABLE5_GRID[config_id][0]) * len(_TABLE5_GRID[config_id][1]) == 1:
            out[config_id] = members[0]
        else:
            out[config_id] = _find_ensemble(cfg, members)
    return out


def table3_models(cfg: dict) -> dict[str, str | None]:
    """Table 3 row label -> model or ensemble name in the resolved config ``cfg`` (None: missing)."""
    t5 = table5_models(cfg)
    out: dict[str, str | None] = {row: None for row in TABLE3_ROWS}
    out["X-Transformer"] = next((t5[i] for i in (9, 7, 8) if t5[i] is not None), None)
    peers = xc.peer_models(cfg)
    out["Parabel"] = "omikuji" if "omikuji" in peers else None
    out[XR_LINEAR_ROW] = "xr-linear" if "xr-linear" in peers else None
    b = cfg["linear_baseline"]
    if b["enabled"]:
        encoder = b["encoder"]  # resolve() fills it
        rows = {"tfidf": "phi_tfidf + linear", "pre": "phi_pre + linear",
                "tfidf+fnt": "phi_fnt (+) phi_tfidf + linear"}
        for kind in (k for k in b["inputs"] if k in rows):  # char, tfidf+char: not in the paper
            out[rows[kind]] = xc.Model(b["indexer"][0], xc.LINEAR_MATCHER, xc.linear_input_name(kind, encoder),
                                       b["negatives"][0], b["combine"][0]).name
    return out


# Model ids of sentence encoders (trained for sentence similarity, not plain language models).
_SENTENCE_ENCODERS = ("all-minilm", "all-mpnet", "sentence-transformers/", "gt-all-")
PECOS_BEAM = 10  # PECOS XR-Linear's default beam, the linear rows' reference


def table5_roles(cfg: dict) -> dict[int, str]:
    """Table 5 id -> the encoder that played each of the paper's roles in it, e.g.
    ``"XLNet role: minilm"`` (``"RoBERTa role: none"`` where ``paper.roles`` maps no encoder)."""
    mapping = cfg.get("paper", {}).get("roles", {})
    return {i: "; ".join(f"{role} role: {mapping.get(role) or 'none'}" for role in _TABLE5_GRID[i][1])
            for i in TABLE5_IDS}


def _encoder_words(cfg: dict, encoder: str) -> str:
    model = str(cfg.get("encoders", {}).get(encoder, {}).get("model", ""))
    if any(tag in model.lower() for tag in _SENTENCE_ENCODERS):
        return f"{encoder} ({model}), a sentence encoder"
    return f"{encoder} ({model})" if model else str(encoder)


def _is_xlnet(cfg: dict, encoder) -> bool:
    return "xlnet" in str(cfg.get("encoders", {}).get(encoder, {}).get("model", encoder)).lower()


def table3_notes(cfg: dict) -> dict[str, str]:
    """Table 3 row label -> a short note where our row is a substitute for the paper's ("" where
    it is not, or the row is missing). Resolved config ``cfg``."""
    notes = {row: "" for row in TABLE3_ROWS}
    methods = table3_models(cfg)
    t5 = table5_models(cfg)
    mapping = cfg.get("paper", {}).get("roles", {})
    xt = methods["X-Transformer"]
    if xt is not None and xt != t5[9]:
        if xt == t5[7]:
            notes["X-Transformer"] = (f"Table 5 id 7: 3 indexers x {mapping.get('XLNet')} "
                                      "(paper: 9 models, 3 indexers x BERT, RoBERTa, XLNet)")
        else:
            encoders = ", ".join(str(mapping.get(r)) for r in xc.PAPER_ROLES)
            notes["X-Transformer"] = (f"Table 5 id 8: pifa-neural x {encoders} "
                                      "(paper: 9 models, 3 indexers x BERT, RoBERTa, XLNet)")
    b = cfg["linear_baseline"]
    top_b = cfg["matcher"]["top_b"]  # the linear matcher's beam (rules/common.smk: baseline_top_b)
    encoder = b.get("encoder")
    other = not _is_xlnet(cfg, encoder)
    words = {"phi_pre + linear": f"phi_pre: {_encoder_words(cfg, encoder)} (paper: XLNet)" if other else "",
             "phi_fnt (+) phi_tfidf + linear": f"phi_fnt: {encoder} fine-tuned (paper: XLNet)" if other else "",
             "phi_tfidf + linear": ""}
    for row, what in words.items():
        if methods[row] is None:
            continue
        parts = ([what] if what else []) + ["linear matcher + rankers (paper: Parabel)"]
        if top_b != PECOS_BEAM:
            parts.append(f"top-b {top_b} (PECOS default: {PECOS_BEAM})")
        notes[row] = "; ".join(parts)
    for row in ("Parabel", XR_LINEAR_ROW):  # the peers get no tuning of ours
        if methods.get(row) is not None:
            notes[row] = f"{methods[row]} at its published defaults (not tuned on validation)"
    if xt is not None and cfg["ensembles"].get(xt, {}).get("method") == "auto":
        picked = "rule and members picked on the validation split"
        notes["X-Transformer"] = "; ".join(filter(None, [notes["X-Transformer"], picked]))
    return notes


# The row groups of the P@k figure, in order.
FIGURE_GROUPS = ("X-Transformer models", "linear baselines", "ensembles", "related systems", "peers")


def model_groups(cfg: dict) -> dict[str, str]:
    """Every model and ensemble of the resolved config ``cfg`` -> its :data:`FIGURE_GROUPS` entry."""
    out = {m.name: FIGURE_GROUPS[0] for m in xc.transformer_models(cfg)}
    out |= {m.name: FIGURE_GROUPS[1] for m in xc.baseline_models(cfg)}
    out |= {name: FIGURE_GROUPS[2] for name in cfg["ensembles"]}
    out |= {m.name: FIGURE_GROUPS[3] for m in xc.xr_models(cfg)}
    out |= {name: FIGURE_GROUPS[3] for name in xc.aplc_models(cfg)}
    out |= {name: FIGURE_GROUPS[4] for name in xc.peer_models(cfg)}
    return out


def _encoder_roles(cfg: dict, encoder: str) -> str:
    """``"minilm = BERT, XLNet"``: the paper roles an encoder plays (just its name if none)."""
    roles = [role for role in xc.PAPER_ROLES if cfg.get("paper", {}).get("roles", {}).get(role) == encoder]
    return f"{encoder} = {', '.join(roles)}" if roles else encoder


def role_marks(cfg: dict) -> dict[str, str]:
    """Model or ensemble name -> which encoder played which of the paper's roles in it, e.g.
    ``"minilm = BERT, XLNet"``, ``"phi_pre: minilm"``; "" for models without an encoder."""
    out: dict[str, str] = {}
    for m in xc.transformer_models(cfg):
        out[m.name] = _encoder_roles(cfg, m.matcher)
    for m in xc.baseline_models(cfg):
        kind, encoder = xc.parse_linear_input(m.input)
        what = {"pre": "phi_pre", "tfidf+fnt": "phi_fnt"}.get(kind)
        out[m.name] = f"{what}: {encoder}" if what and encoder else ""
    for m in xc.xr_models(cfg):
        out[m.name] = m.matcher[len(xc.XR_MATCHER_PREFIX):]
    for name in xc.aplc_models(cfg):
        out[name] = name[len(xc.APLC_PREFIX):]
    for name in xc.peer_models(cfg):
        out[name] = ""
    for name in cfg["ensembles"]:
        marks = []
        for member in xc.ensemble_members(cfg, name):
            mark = out.get(member, "")
            if mark and mark not in marks:
                marks.append(mark)
        out[name] = "; ".join(marks)
    return out
