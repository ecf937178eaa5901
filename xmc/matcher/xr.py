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
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from xmc.matcher.beam import beam_scores
from xmc.matcher.transformer import (MatcherParams, TransformerMatcher, build_net, checkpoint_params, loop_settings,
                                     make_optimizer, resolve_device)
from xmc.params import FromDict
from xmc.training import (Checkpoints, EpochBatches, check_tokens, data_digest, data_parallel, start_distributed,
                          train_loop)

__all__ = ["XRParams", "XRRun", "XRTransformer", "default_levels", "grow_head", "level_assignment", "level_targets",
           "matcher_aware_candidates", "online_candidates", "masked_row_hinge_losses", "masked_squared_hinge_loss",
           "split_steps", "train_level"]

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


def masked_row_hinge_losses(scores: torch.Tensor, M: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row, the mean over its masked k of max(0, 1 - M~_ik g_ik)^2, M~ = 2M - 1: (B,).
    All inputs (B, K); a row without candidates has loss 0. Per-row losses (rather than one mean over
    the batch's candidates) make the batch loss their mean, which data-parallel ranks split exactly."""
    signs = 2.0 * M.to(scores.dtype) - 1.0
    w = mask.to(scores.dtype)
    return (torch.clamp(1.0 - signs * scores, min=0.0).pow(2) * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


def masked_squared_hinge_loss(scores: torch.Tensor, M: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The batch loss: the mean over rows of :func:`masked_row_hinge_losses`."""
    return masked_row_hinge_losses(scores, M, mask).mean()


def _fingerprint(p: MatcherParams, xr: XRParams, levels, steps, encoder_dir, ids, mask, Y, assignment,
                 world: int) -> dict:
    """What a checkpoint must share with this run to be resumed (see the matcher's)."""
    return {**checkpoint_params(p), **{f"xr_{k}": v for k, v in xr.to_dict().items()}, "levels": levels, "steps": steps,
            "encoder_dir": str(encoder_dir), "N": Y.shape[0], "L": Y.shape[1], "world_size": world,
            "data_sha256": data_digest(ids, mask, Y.indptr, Y.indices, assignment)}


@dataclass
class XRRun:
    """What every level of one XR-Transformer training shares."""

    ids: torch.Tensor
    mask: torch.Tensor
    params: MatcherParams
    xr: XRParams
    levels: list
    steps: list
    device: torch.device
    rank: int
    world: int
    checkpoints: Checkpoints | None
    log: Callable[[str], None] | None


def grow_head(net, tree: list, level: int, parent_level: int, bootstrap: str, device) -> None:
    """Freeze the finished level's head into ``tree`` (the beam's and the negatives' level) and give
    ``net`` a new head over ``level`` clusters; with ``bootstrap="inherit"`` each child's row starts
    from its parent's."""
    old = net.head
    tree.append((parent_level, old))
    net.head = torch.nn.Linear(old.in_features, level).to(device)
    if bootstrap == "inherit":
        with torch.no_grad():
            parent = torch.arange(level, device=device) // (level // parent_level)
            net.head.weight.copy_(old.weight[parent])
            net.head.bias.copy_(old.bias[parent])


def train_level(run: XRRun, net, tree: list, t: int, M: sp.csr_matrix, support: sp.csr_matrix | None,
                history: list, resume=None, extra=None) -> tuple[list, dict]:
    """Fine-tune ``net`` (encoder + the head of level t) for ``run.steps[t]`` optimiser steps on the
    masked squared hinge against the level's targets M (N, K_t). The loss support of a row: all
    clusters at the first level, else its true clusters plus the children of the previous level's
    top-k: ``support`` (N, K_t) bool ("pass" negatives), or from each batch's own embeddings through
    the frozen heads ``tree`` ("online"). ``resume``: the checkpoint's state when it was written at
    this level; ``extra``: the run's state a checkpoint keeps (:func:`xmc.training.train_loop`).
    Returns the history (``history`` extended) and the level's summary (level, steps, seconds,
    mean candidates)."""
    from transformers import get_linear_schedule_with_warmup

    p, xr, device, ids, mask = run.params, run.xr, run.device, run.ids, run.mask
    level, n_steps = run.levels[t], run.steps[t]
    for _, head in tree:
        head.requires_grad_(False)
    model = data_parallel(net, device, p.seed + t, run.rank, run.world)  # DDP again: the head is new
    optimizer = make_optimizer(net, p, device)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(p.warmup_steps / p.max_steps * n_steps), n_steps)
    batches = EpochBatches(ids.shape[0], p.batch_size, p.seed + t)
    online = t > 0 and xr.negatives == "online"
    if run.log is not None:
        per_row = "" if support is None else f", {support.nnz / support.shape[0]:.1f} candidate clusters per instance"
        run.log(f"level {t + 1}/{len(run.levels)}: K_t = {level}, {n_steps} steps{per_row}")
    start, counts = time.perf_counter(), [0, 0]  # candidates, rows

    def row_losses(model_, rows):
        target = torch.from_numpy(M[rows.numpy()].toarray()).to(device)
        scores, emb = model_(ids[rows].to(device), mask[rows].to(device))
        if online:
            weight = online_candidates(emb.detach().float(), tree, target, xr.top_k)
        elif support is None:
            weight = torch.ones_like(target)
        else:
            weight = torch.from_numpy(support[rows.numpy()].toarray()).to(device)
        counts[0] += int(weight.sum())
        counts[1] += len(rows)
        return masked_row_hinge_losses(scores.float(), target, weight)

    history = train_loop(net, row_losses, optimizer, scheduler, batches,
                         loop_settings(p, name=f"xr level {level}", steps=n_steps), device=device, model=model,
                         rank=run.rank, world=run.world, checkpoints=run.checkpoints, resume=resume, phase=t,
                         extra=extra, step_offset=sum(run.steps[:t]), total_steps=sum(run.steps), history=history,
                         tag={"level": level}, prefix=f"level {level} ", log=run.log)
    return history, {"level": level, "steps": n_steps, "seconds": time.perf_counter() - start,
                     "candidates": counts[0] / max(counts[1], 1)}


class XRTransformer:
    """XR-Transformer's training: :meth:`train` fine-tunes a :class:`TransformerMatcher` level by
    level (:func:`train_level`); it predicts (``MatcherPredParams``), saves and loads as any
    transformer matcher, with a beam search through its coarser heads."""

    @classmethod
    def train(cls, encoder_dir: str, input_ids, attention_mask, Y, assignment, n_clusters: int,
              params: MatcherParams | None = None, xr: XRParams | None = None,
              log: Callable[[str], None] | None = None, checkpoint_dir=None) -> TransformerMatcher:
        """Fine-tune ``encoder_dir`` level by level over the label tree.

        input_ids, attention_mask : int (N, T); Y : sparse (N, L) 0/1; assignment : int (L,) leaf of
        each label in a :class:`BalancedKMeans` tree of ``n_clusters`` leaves (``C_.indices``).
        Returns a TransformerMatcher over the K leaves whose ``history_`` rows carry the ``level``
        (K_t) and the global step; ``xr_levels_`` lists (level, steps, seconds, mean candidates).
        """
        from transformers import AutoTokenizer

        p = params or MatcherParams()
        xr = xr or XRParams()
        ids, mask = check_tokens(input_ids, attention_mask)
        Y = sp.csr_matrix(Y)
        assignment = np.asarray(assignment, dtype=np.int64)
        if Y.shape[0] != ids.shape[0]:
            raise ValueError(f"Y has {Y.shape[0]} rows but input_ids has {ids.shape[0]}")
        if assignment.shape != (Y.shape[1],):
            raise ValueError(f"assignment: expected shape ({Y.shape[1]},) (one leaf per label), got {assignment.shape}")
        if ids.shape[0] == 0:
            raise ValueError("input_ids has no rows; the matcher needs at least one training instance")
        levels, steps = xr.resolve(n_clusters, p.max_steps)
        device, rank, world = start_distributed(resolve_device(p.device))
        if rank != 0:  # one voice: rank 0 logs and shows progress
            log = lambda message: None  # noqa: E731
        say = log or (lambda message: None)
        torch.manual_seed(p.seed)
        net, family = build_net(encoder_dir, levels[0], p, device)
        tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), use_fast=True)
        if world > 1:
            say(f"data-parallel over {world} processes ({device.type}): total batch {p.batch_size * p.grad_accum}")
        history, summary, prev_top, tree = [], [], None, []
        checkpoints = state = None
        if checkpoint_dir is not None and p.checkpoint_every > 0:
            warn = log or (lambda message: warnings.warn(message, stacklevel=2))
            checkpoints = Checkpoints(checkpoint_dir, _fingerprint(p, xr, levels, steps, encoder_dir, ids, mask, Y,
                                                                   assignment, world),
                                      p.checkpoint_every, "xr matcher", warn, rank)
            state = checkpoints.read()
        first = 0
        if state is not None:  # rebuild the levels finished before the checkpoint's; its own comes next
            first, extra = state["phase"], state["extra"]
            for t in range(first):
                head = torch.nn.Linear(net.head.in_features, levels[t]).to(device)
                head.load_state_dict(extra["tree"][t])
                tree.append((levels[t], head))
            net.head = torch.nn.Linear(net.head.in_features, levels[first]).to(device)
            summary = list(extra["summary"])
            if extra.get("prev_top") is not None:
                prev_top = sp.csr_matrix(tuple(extra["prev_top"][:3]), shape=tuple(extra["prev_top"][3]))
            say(f"resuming at level {first + 1}/{len(levels)} (K_t = {levels[first]})")

        def extra_state():
            top = None if prev_top is None else (torch.from_numpy(prev_top.data), torch.from_numpy(prev_top.indices),
                                                 torch.from_numpy(prev_top.indptr), list(prev_top.shape))
            return {"tree": [h.state_dict() for _, h in tree], "summary": summary, "prev_top": top}

        run = XRRun(ids, mask, p, xr, levels, steps, device, rank, world, checkpoints, log)
        for t in range(first, len(levels)):
            level = levels[t]
            M = level_targets(Y, assignment, n_clusters, level)
            support = None  # the coarsest level sees all its clusters; online: per batch
            if t > 0 and xr.negatives == "pass":
                support = matcher_aware_candidates(M, prev_top, levels[t - 1], level)
            if t > 0 and (t > first or state is None):
                grow_head(net, tree, level, levels[t - 1], xr.bootstrap, device)
            history, done = train_level(run, net, tree, t, M, support, history,
                                        resume=state if t == first else None, extra=extra_state)
            if t + 1 < len(levels) and xr.negatives == "pass":
                # the next level's negatives: this level's top-k (beam search) on the training set
                matcher = TransformerMatcher(net, tokenizer, family, p, device, history, tree=list(tree))
                prev_top, _ = matcher.predict(input_ids, attention_mask, top_b=min(xr.top_k, level))
                net.train()
            summary.append(done)
        if p.gradient_checkpointing:
            net.encoder.gradient_checkpointing_disable()
        final_params = dataclasses.replace(p, max_steps=sum(steps), warmup_steps=0)
        matcher = TransformerMatcher(net, tokenizer, family, final_params, device, history, tree=tree)
        matcher.xr_levels_ = summary
        return matcher
