"""The allowed values of the workflow's named choices, each declared once.

config/schema.yaml's `definitions` enums must equal these tuples (tests/test_config.py), and
xmc.config, the estimators and the Snakefile's wildcard constraints import them from here. Pure
constants: this module imports nothing from xmc, so anything may import it without a cycle.
"""
from __future__ import annotations

# Indexers (label representations clustered into the tree): PIFA over TF-IDF, text embeddings, PIFA over fine-tuned embeddings.
INDEXERS = ("pifa-tfidf", "text-emb", "pifa-neural")
# Ranker features: phi_tfidf alone, or phi_tfidf (+) the matcher's fine-tuned embedding.
RANKER_INPUTS = ("tfidf", "tfidf+neural")
# Features of the Table 3 linear baselines (`linear_baseline.inputs`): phi_tfidf, phi_pre
# (pretrained, not fine-tuned, mean-pooled encoder embeddings) and phi_fnt (+) phi_tfidf (the
# fine-tuned matcher's embeddings next to TF-IDF); and, not in the paper, phi_char (TF-IDF over
# character n-grams, `tfidf_char`) alone or beside phi_tfidf: members whose errors differ from the
# word models' (what an ensemble needs when there is one encoder). The matcher and the rankers see
# the same features.
LINEAR_INPUTS = ("tfidf", "pre", "tfidf+fnt", "char", "tfidf+char")
# Ranker negatives: teacher-forcing negatives (TFN), matcher-aware negatives (MAN), or both.
NEGATIVES = ("tfn", "man", "tfn+man")
# sigma(g, h): how the matcher score g and the ranker score h combine into the final score.
COMBINE = ("noop", "sigmoid", "l2-hinge", "l3-hinge")
# Ensemble rules over the models' predictions (xmc.ensemble).
ENSEMBLE_METHODS = ("average", "rank_average", "round_robin", "softmax_average", "sigmoid_average")
# The ensemble method that picks the rule and the members on validation (xmc.selection).
AUTO = "auto"
# How the encoder's token states become one text embedding (auto: the family's own).
POOLINGS = ("auto", "cls", "mean", "last")
# Training precision: fp32 (paper), bf16 / fp16 autocast, auto (bf16 where the CPU has it natively).
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
# Prediction precision: the training ones, or int8 (the encoder dynamically quantised, CPU only).
PREDICT_PRECISIONS = (*PRECISIONS, "int8")
# where the matcher's cluster head starts (xmc.matcher.head_init)
HEAD_INITS = ("random", "probe", "centroids")
# The peers, rows of the same tables (xmc.peers): PECOS XR-Linear and omikuji's Parabel.
PEERS = ("xr-linear", "omikuji")
# The paper's encoders, played by encoders of the config (`paper.roles`, Table 5's ids).
PAPER_ROLES = ("BERT", "RoBERTa", "XLNet")
# TF-IDF analyzers (scikit-learn's): words, character n-grams inside word boundaries, or across them.
ANALYZERS = ("word", "char_wb", "char")
