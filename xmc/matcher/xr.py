"""XR-Transformer (Zhang et al., NeurIPS 2021): the matcher fine-tuned over a hierarchy of label
clusterings, coarse to fine, instead of one flat K.

The label tree is the one :class:`xmc.indexing.BalancedKMeans` builds: its K leaves are numbered
left to right and every split is binary, so the ancestor of leaf ``k`` at resolution ``K_t``
(a power of two <= K) is ``k // (K / K_t)``, and the children of cluster ``c`` of resolution
``K_t`` at the next resolution ``K_{t+1}`` are ``c * r, ..., c * r + r - 1`` with
``r = K_{t+1} / K_t``. Reading the tree at several resolutions needs no second clustering.

Level t fine-tunes the encoder carried over from level t - 1 with a new linear head over the
``K_t`` clusters (initialised from the parent's row when ``bootstrap="inherit"``), on the squared
hinge loss restricted to the matcher-aware candidates of each instance: its true clusters plus the
children of the top-k clusters the level t - 1 matcher predicts for it (all clusters at the first
level). A finished level's head is frozen and kept. After the last level (``K_T = K``) the result is
a :class:`~xmc.matcher.transformer.TransformerMatcher` over the K clusters that carries the coarser
heads (``tree_``) and predicts by beam search through them, as PECOS does: only the children of
each level's top-b are scored, which is where the masked loss trained the finer heads (scoring
all K with the last head ranked clusters that were never anyone's negative). The prediction and
ranker stages run on it unchanged.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from xmc.encoders import encoder_family
from xmc.matcher.transformer import (MatcherParams, TransformerMatcher, _check_tokens, _EpochBatches, _Net,
                                     beam_scores, make_optimizer, resolve_device, resolve_pooling)
from xmc.params import FromDict

__all__ = ["XRParams", "default_levels", "level_assignment", "level_targets", "matcher_aware_candidates", "online_candidates", "masked_squared_hinge_loss", "split_steps", "train_xr_matcher"]

BOOTSTRAPS = ("inherit", "none")
NEGATIVES = ("online", "pass")


@dataclass
class XRParams(FromDict):
    """The XR-Transformer settings on top of :class:`MatcherParams` (which give learning rates,
    batch size, pooling, device, seed).

    levels : increasing powers of two, the last = K (null: 16, 64, 256, ... below K, then K).
    steps : optimiser steps per level (null: the matcher's ``max_steps`` split evenly, so the
        total budget equals X-Transformer's). Warm-up per level: the matcher's warm-up fraction.
    top_k : clusters of the previous level whose children are each instance's negatives (and the
        beam of the negatives' search through the coarser levels).
    bootstrap : "inherit" starts a child's head row from its parent's, "none" from random.
    negatives : "online" takes each batch's previous-level top-k from the batch's own embeddings
        (the coarser levels' frozen heads, beam search), so no extra pass over the data;
        "pass" predicts the whole training set with the finished previous level first (PECOS's
        order; one encoder forward pass over the training set per non-final level).
    """

    config_section = "xr_transformer"

    levels: list | None = None
    steps: list | None = None
    top_k: int = 5
    bootstrap: str = "inherit"
    negatives: str = "online"

    def __post_init__(self):
        if self.negatives not in NEGATIVES:
            raise ValueError(f"xr_transformer negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"xr_transformer top_k must be a positive integer, got {self.top_k!r}")
        if self.bootstrap not in BOOTSTRAPS:
            raise ValueError(f"xr_transformer bootstrap must be one of {BOOTSTRAPS}, got {self.bootstrap!r}")
        for name in ("levels", "steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (list, tuple)) or not value or any(
                    isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
                raise ValueError(f"xr_transformer {name} must be null or a non-empty list of positive "
                                 f"integers, got {value!r}")

    def resolve(self, n_clusters: int, total_steps: int) -> tuple[list[int], list[int]]:
        """(levels, steps) for a tree of ``n_clusters`` leaves and a default budget ``total_steps``."""
        levels = list(self.levels) if self.levels is not None else default_levels(n_clusters)
        check_levels(levels, n_clusters)
        steps = list(self.steps) if self.steps is not None else split_steps(total_steps, len(levels))
        if len(steps) != len(levels):
            raise ValueError(f"xr_transformer steps has {len(steps)} entries but there are {len(levels)} "
                             f"levels {levels}")
        return levels, steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_levels(n_clusters: int) -> list[int]:
    """16, 64, 256, ... (every other depth from 2^4) below K, then K itself."""
    levels, k = [], 16
    while k < n_clusters:
        levels.append(k)
        k *= 4
    return levels + [int(n_clusters)]


def check_levels(levels, n_clusters: int) -> None:
    if not levels or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or k & (k - 1)
                         for k in levels):
        raise ValueError(f"xr_transformer levels must be powers of two, got {levels!r}")
    if any(a >= b for a, b in zip(levels, levels[1:])):
        raise ValueError(f"xr_transformer levels must increase strictly, got {levels!r}")
    if levels[-1] != n_clusters:
        raise ValueError(f"xr_transformer levels must end with K = {n_clusters} (the indexer's clusters), "
                         f"got {levels!r}")


def split_steps(total: int, n_levels: int) -> list[int]:
    """``total`` steps over ``n_levels`` levels as evenly as possible (finer levels get the rest)."""
    if total < n_levels:
        raise ValueError(f"{total} steps cannot give each of {n_levels} levels at least one")
    base, rest = divmod(int(total), n_levels)
    return [base + (1 if i >= n_levels - rest else 0) for i in range(n_levels)]


def level_assignment(assignment, n_clusters: int, level: int) -> np.ndarray:
    """Cluster of each label at resolution ``level``: int64 (L,), leaf // (K / level)."""
    assignment = np.asarray(assignment, dtype=np.int64)
    check_levels([level] if level == n_clusters else [level, n_clusters], n_clusters)
    return assignment // (n_clusters // level)


def level_targets(Y, assignment, n_clusters: int, level: int) -> sp.csr_matrix:
    """Binarised Y C_t: CSR float32 (N, level), 1 where an instance has a label in that cluster."""
    from xmc.indexing import cluster_targets

    a = level_assignment(assignment, n_clusters, level)
    C = sp.csr_matrix((np.ones(a.size, dtype=np.float32), (np.arange(a.size), a)), shape=(a.size, level))
    return cluster_targets(Y, C)


def matcher_aware_candidates(M_true, prev_top, parent_level: int, child_level: int) -> sp.csr_matrix:
    """Per-instance loss support at a level: true clusters plus the children of the previous
    level's top-k predicted clusters. M_true : sparse (N, child_level); prev_top : sparse
    (N, parent_level) whose stored entries are the predicted clusters. Returns CSR bool."""
    if prev_top.shape != (M_true.shape[0], parent_level):
        raise ValueError(f"prev_top: expected shape ({M_true.shape[0]}, {parent_level}), got {prev_top.shape}")
    r = child_level // parent_level
    # E (parent_level, child_level) maps a parent onto its r children.
    E = sp.csr_matrix((np.ones(child_level, dtype=np.float32),
                       (np.arange(child_level) // r, np.arange(child_level))), shape=(parent_level, child_level))
    P = sp.csr_matrix(prev_top, dtype=np.float32, copy=True)
    P.data[:] = 1.0
    T = sp.csr_matrix(M_true, dtype=np.float32, copy=True)
    T.eliminate_zeros()
    T.data[:] = 1.0
    return sp.csr_matrix(P @ E + T, dtype=bool)


@torch.no_grad()
def online_candidates(emb: torch.Tensor, tree, target: torch.Tensor, top_k: int) -> torch.Tensor:
    """:func:`matcher_aware_candidates` for one batch, from its own embeddings: the previous level's
    top-k by beam search through the coarser levels' heads ``tree`` [(K_t, head)], their children at
    the current level (``target.shape[1]`` clusters), plus the true clusters. Returns bool (B, K_t)."""
    # beam_scores leaves exactly the children of the previous level's top-k finite at this level
    reached = torch.isfinite(beam_scores(emb, tree, torch.zeros_like(target, dtype=torch.float32), top_k))
    return reached | (target > 0)


def masked_squared_hinge_loss(scores: torch.Tensor, M: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked (i, k) of max(0, 1 - M~_ik g_ik)^2, M~ = 2M - 1. All tensors (B, K)."""
    signs = 2.0 * M.to(scores.dtype) - 1.0
    w = mask.to(scores.dtype)
    return (torch.clamp(1.0 - signs * scores, min=0.0).pow(2) * w).sum() / w.sum().clamp(min=1.0)


def train_xr_matcher(encoder_dir: str, input_ids, attention_mask, Y, assignment, n_clusters: int,
                     params: MatcherParams | None = None, xr: XRParams | None = None,
                     log: Callable[[str], None] | None = None) -> TransformerMatcher:
    """Fine-tune ``encoder_dir`` level by level over the label tree.

    input_ids, attention_mask : int (N, T); Y : sparse (N, L) 0/1; assignment : int (L,) leaf of
    each label in a :class:`BalancedKMeans` tree of ``n_clusters`` leaves (``C_.indices``).
    Returns a TransformerMatcher over the K leaves whose ``history_`` rows carry the ``level``
    (K_t) and the global step; ``xr_levels_`` lists (level, steps, seconds, mean candidates).
    """
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    p = params or MatcherParams()
    xr = xr or XRParams()
    ids, mask = _check_tokens(input_ids, attention_mask)
    Y = sp.csr_matrix(Y)
    assignment = np.asarray(assignment, dtype=np.int64)
    if Y.shape[0] != ids.shape[0]:
        raise ValueError(f"Y has {Y.shape[0]} rows but input_ids has {ids.shape[0]}")
    if assignment.shape != (Y.shape[1],):
        raise ValueError(f"assignment: expected shape ({Y.shape[1]},) (one leaf per label), got {assignment.shape}")
    if ids.shape[0] == 0:
        raise ValueError("input_ids has no rows; the matcher needs at least one training instance")
    levels, steps = xr.resolve(n_clusters, p.max_steps)
    say = log or (lambda message: None)
    device = resolve_device(p.device)
    family = encoder_family(encoder_dir)
    torch.manual_seed(p.seed)
    net = _Net(AutoModel.from_pretrained(str(encoder_dir)), levels[0], resolve_pooling(p.pooling, family),
               p.dropout).to(device)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), use_fast=True)
    warmup_frac = p.warmup_steps / p.max_steps
    history, done, summary, prev_top, tree = [], 0, [], None, []
    for t, (level, n_steps) in enumerate(zip(levels, steps)):
        M = level_targets(Y, assignment, n_clusters, level)
        support = None  # the coarsest level sees all its clusters; online: per batch
        if t > 0:
            if xr.negatives == "pass":
                support = matcher_aware_candidates(M, prev_top, levels[t - 1], level)
            old = net.head
            tree.append((levels[t - 1], old))  # frozen from now on: the beam's and negatives' level
            net.head = torch.nn.Linear(old.in_features, level).to(device)
            if xr.bootstrap == "inherit":
                with torch.no_grad():
                    parent = torch.arange(level, device=device) // (level // levels[t - 1])
                    net.head.weight.copy_(old.weight[parent])
                    net.head.bias.copy_(old.bias[parent])
        net.train()
        optimizer = make_optimizer(net, p, device)
        scheduler = get_linear_schedule_with_warmup(optimizer, round(warmup_frac * n_steps), n_steps)
        batches = _EpochBatches(ids.shape[0], p.batch_size, p.seed + t)
        online = t > 0 and xr.negatives == "online"
        say(f"level {t + 1}/{len(levels)}: K_t = {level}, {n_steps} steps"
            + ("" if support is None else f", {support.nnz / support.shape[0]:.1f} candidate clusters per instance"))
        start, n_support, n_rows = time.perf_counter(), 0, 0
        for _ in tqdm(range(n_steps), desc=f"xr level {level}", unit="step", mininterval=1.0):
            step_loss = 0.0
            for _ in range(p.grad_accum):
                idx = next(batches).numpy()
                target = torch.from_numpy(M[idx].toarray()).to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=p.precision == "bf16"):
                    scores, emb = net(ids[idx].to(device), mask[idx].to(device))
                if online:
                    weight = online_candidates(emb.detach().float(), tree, target, xr.top_k)
                elif support is None:
                    weight = torch.ones_like(target)
                else:
                    weight = torch.from_numpy(support[idx].toarray()).to(device)
                n_support += int(weight.sum())
                n_rows += len(idx)
                loss = masked_squared_hinge_loss(scores.float(), target, weight) / p.grad_accum
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"xr matcher loss is {loss.item()} at level {level}; lower "
                                             f"learning_rate ({p.learning_rate:g})")
                loss.backward()
                step_loss += loss.item()
            torch.nn.utils.clip_grad_norm_(net.parameters(), p.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            history.append({"step": done, "loss": step_loss, "lr": scheduler.get_last_lr()[0], "level": level})
            if done % p.log_every == 0:
                say(f"level {level} step {done}/{sum(steps)} loss "
                    f"{np.mean([h['loss'] for h in history[-p.log_every:]]):.5f}")
        net.eval()
        if t + 1 < len(levels) and xr.negatives == "pass":
            # the next level's negatives: this level's top-k (beam search) on the training set
            matcher = TransformerMatcher(net, tokenizer, family, p, device, history, tree=list(tree))
            prev_top, _ = matcher.predict(input_ids, attention_mask, top_b=min(xr.top_k, level))
        summary.append({"level": level, "steps": n_steps, "seconds": time.perf_counter() - start,
                        "candidates": n_support / max(n_rows, 1)})
    for _, head in tree:
        head.requires_grad_(False)
    final_params = dataclasses.replace(p, max_steps=sum(steps), warmup_steps=0)
    matcher = TransformerMatcher(net, tokenizer, family, final_params, device, history, tree=tree)
    matcher.xr_levels_ = summary
    return matcher
