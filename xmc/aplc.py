"""APLC-XLNet (Ye et al., ICML 2020): an encoder, a hidden layer of size d_h and an Adaptive
Probabilistic Label Clusters (APLC) output layer, trained end to end.

Labels sorted by training frequency (most frequent first, ties by the lower label index) are cut
into a head cluster and tail clusters by ``proportions``. The head scores its labels plus one node
per tail cluster from the hidden state h; tail cluster i (1-based) first projects h down to
``d_h // q**i`` dimensions, then scores its labels. With sigmoids (multi-label):

    p(l | x) = sigmoid(head_l(h))                                   l in the head
    p(l | x) = sigmoid(head_node_i(h)) * sigmoid(tail_i,l(P_i h))   l in tail cluster i

The loss is binary cross-entropy over all head outputs (a tail node's target: the instance has a
label in that cluster) plus, for each tail cluster, BCE over its labels for the instances that have
a label in it (the clusters an instance "needs"), summed and divided by the batch size.
Learning rates are discriminative (encoder / hidden / APLC) with a slanted triangular schedule.
"""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from tqdm.auto import tqdm

from xmc.encoders import encoder_family
from xmc.io import atomic_path
from xmc.matcher.transformer import POOLINGS, pool_hidden_states, resolve_device, resolve_pooling
from xmc.params import FromDict, check_positive_int
from xmc.training import (PRECISIONS, Checkpoints, EpochBatches, LoopSettings, autocast, check_tokens, data_digest,
                          data_parallel, length_sorted_batches, start_distributed, train_loop)

__all__ = ["APLCParams", "APLCPredParams", "partition_labels", "APLCLayer", "aplc_row_losses", "aplc_loss",
           "slanted_triangular", "APLC"]

META_FILE, HEAD_FILE = "aplc.json", "aplc.pt"
# Settings that change neither the trained weights nor the loss history (see the matcher's).
_NOT_IN_FINGERPRINT = ("checkpoint_every", "log_every", "eval_batch_size", "top_k")


@dataclass
class APLCParams(FromDict):
    """APLC-XLNet settings (defaults: the paper's learning rates; proportions for ~4k labels)."""

    config_section = "aplc"

    hidden_size: int = 512
    proportions: list = dataclasses.field(default_factory=lambda: [0.5, 0.5])
    q: float = 2.0
    max_steps: int = 1000
    batch_size: int = 16
    encoder_learning_rate: float = 5e-5
    hidden_learning_rate: float = 1e-4
    aplc_learning_rate: float = 2e-3
    cut_frac: float = 0.1
    ratio: float = 32.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    dropout: float = 0.1
    prior_init: bool = True
    pooling: str = "auto"
    seed: int = 0
    eval_batch_size: int = 64
    top_k: int = 20
    device: str = "auto"
    log_every: int = 10
    precision: str = "fp32"
    grad_accum: int = 1
    checkpoint_every: int = 100

    def __post_init__(self):
        for name in ("encoder_learning_rate", "hidden_learning_rate", "aplc_learning_rate", "q", "ratio",
                     "cut_frac", "weight_decay", "max_grad_norm", "dropout"):
            value = getattr(self, name)
            try:
                setattr(self, name, float(value))  # YAML reads "5e-5" as a string
            except (TypeError, ValueError):
                raise ValueError(f"aplc {name} must be a number, got {value!r}") from None
        for name in ("hidden_size", "max_steps", "batch_size", "eval_batch_size", "top_k", "log_every", "grad_accum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"aplc {name} must be a positive integer, got {value!r}")
        for name in ("encoder_learning_rate", "hidden_learning_rate", "aplc_learning_rate", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"aplc {name} must be > 0, got {getattr(self, name)!r}")
        if not self.q >= 1.0:
            raise ValueError(f"aplc q must be >= 1, got {self.q!r}")
        if not 0.0 < self.cut_frac < 1.0 or not self.ratio >= 1.0:
            raise ValueError(f"aplc cut_frac must be in (0, 1) and ratio >= 1, got {self.cut_frac!r}, {self.ratio!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"aplc dropout must be in [0, 1), got {self.dropout!r}")
        props = self.proportions
        if (not isinstance(props, (list, tuple)) or not props
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in props)
                or abs(sum(props) - 1.0) > 1e-6):
            raise ValueError(f"aplc proportions must be positive numbers summing to 1 (head first), got {props!r}")
        self.proportions = [float(v) for v in props]
        if not isinstance(self.prior_init, bool):
            raise ValueError(f"aplc prior_init must be true or false, got {self.prior_init!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"aplc pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"aplc precision must be one of {PRECISIONS}, got {self.precision!r}")
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ValueError(f"aplc checkpoint_every must be an integer >= 0, got {self.checkpoint_every!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def pred_params(self) -> "APLCPredParams":
        """The prediction settings these params carry (the config's ``aplc`` section holds both)."""
        return APLCPredParams(top_k=self.top_k, batch_size=self.eval_batch_size)


@dataclass
class APLCPredParams(FromDict):
    """Prediction settings of APLC: top_k labels kept per row, rows per batch. Defaults:
    :meth:`APLCParams.pred_params`."""

    config_section = "aplc prediction"

    top_k: int = 20
    batch_size: int = 64

    def __post_init__(self):
        check_positive_int(self.top_k, "top_k")
        check_positive_int(self.batch_size, "batch_size")


def partition_labels(label_freq, proportions) -> list[np.ndarray]:
    """Cut labels, most frequent first, into clusters of the given proportions.

    label_freq : (L,) training counts. Returns a list of int64 label-id arrays: [head, tail_1, ...];
    sizes round(cumsum(proportions) * L) differences, each cluster at least one label.
    """
    freq = np.asarray(label_freq)
    n = freq.size
    if len(proportions) > n:
        raise ValueError(f"aplc proportions: {len(proportions)} clusters for only {n} labels")
    order = np.argsort(-freq, kind="stable")
    bounds = np.round(np.cumsum(proportions) * n).astype(np.int64)
    bounds[-1] = n
    for i in range(len(bounds)):  # every cluster keeps at least one label
        bounds[i] = min(max(bounds[i], i + 1), n - (len(bounds) - 1 - i))
    return [order[a:b] for a, b in zip(np.concatenate([[0], bounds[:-1]]), bounds)]


class APLCLayer(nn.Module):
    """The APLC output layer over ``n_labels`` labels cut into ``clusters`` (from partition_labels).

    forward(h (B, d_h)) -> (head logits (B, n_head + n_tail), [tail logits (B, |cluster i|)])
    """

    def __init__(self, d_h: int, clusters: list[np.ndarray], q: float = 2.0):
        super().__init__()
        self.clusters = [np.asarray(c, dtype=np.int64) for c in clusters]
        self.n_head = len(self.clusters[0])
        self.n_tail = len(self.clusters) - 1
        self.n_labels = sum(len(c) for c in self.clusters)
        self.head = nn.Linear(d_h, self.n_head + self.n_tail)
        self.tails = nn.ModuleList()
        for i, c in enumerate(self.clusters[1:], start=1):
            d_i = max(1, int(d_h // (q ** i)))
            self.tails.append(nn.Sequential(nn.Linear(d_h, d_i, bias=False), nn.Linear(d_i, len(c))))

    def forward(self, h):
        return self.head(h), [tail(h) for tail in self.tails]

    @torch.no_grad()
    def init_prior(self, Y) -> None:
        """Output biases to the smoothed log-odds of the training label prior: a head label's
        frequency, a tail node's share of instances needing its cluster, a tail label's frequency
        among those instances. From zero biases every output starts at p = 0.5 for ~all-negative
        targets, and the first steps of a short schedule go to pushing them all down."""
        Y = sp.csr_matrix(Y) > 0
        n = Y.shape[0]
        freq = np.asarray(Y.sum(axis=0)).ravel()

        def logit(count, total):
            q = (np.asarray(count, dtype=np.float64) + 0.5) / (total + 1.0)
            return torch.as_tensor(np.log(q / (1.0 - q))).to(self.head.bias)

        self.head.bias[:self.n_head] = logit(freq[self.clusters[0]], n)
        for i, c in enumerate(self.clusters[1:]):
            needs = int(np.count_nonzero(np.asarray(Y[:, c].sum(axis=1)).ravel()))
            self.head.bias[self.n_head + i] = logit(needs, n)
            self.tails[i][1].bias.copy_(logit(freq[c], needs))

    def log_probs(self, h) -> torch.Tensor:
        """log p(l | x) for every label, in label order: (B, L)."""
        head, tails = self(h)
        out = h.new_empty((h.shape[0], self.n_labels))
        logsig = nn.functional.logsigmoid
        out[:, torch.from_numpy(self.clusters[0]).to(h.device)] = logsig(head[:, :self.n_head])
        for i, tail in enumerate(tails):
            node = logsig(head[:, self.n_head + i]).unsqueeze(1)
            out[:, torch.from_numpy(self.clusters[i + 1]).to(h.device)] = node + logsig(tail)
        return out


def aplc_row_losses(head_logits, tail_logits, Y_batch: sp.csr_matrix, layer: APLCLayer) -> torch.Tensor:
    """Per instance: BCE summed over the head outputs, plus BCE summed over each tail cluster's labels
    where the instance has a label in that cluster. (B,). Y_batch : sparse (B, L) 0/1."""
    Yd = torch.from_numpy(sp.csr_matrix(Y_batch, dtype=np.float32).toarray()).to(head_logits.device) > 0
    Yd = Yd.to(head_logits.dtype)
    bce = nn.functional.binary_cross_entropy_with_logits
    parts = [Yd[:, torch.from_numpy(c).to(Yd.device)] for c in layer.clusters]
    needs = torch.stack([p.amax(dim=1) for p in parts[1:]], dim=1) if layer.n_tail else Yd[:, :0]
    loss = bce(head_logits, torch.cat([parts[0], needs], dim=1), reduction="none").sum(dim=1)
    for i, logits in enumerate(tail_logits):
        loss = loss + bce(logits, parts[i + 1], reduction="none").sum(dim=1) * needs[:, i]
    return loss


def aplc_loss(head_logits, tail_logits, Y_batch: sp.csr_matrix, layer: APLCLayer) -> torch.Tensor:
    """The batch loss: :func:`aplc_row_losses` summed, divided by the batch size."""
    return aplc_row_losses(head_logits, tail_logits, Y_batch, layer).mean()


def slanted_triangular(step: int, total: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """ULMFiT's slanted triangular multiplier of the peak learning rate at ``step`` (0-based) of
    ``total``: linear rise from 1/ratio to 1 over cut_frac * total steps, then linear decay."""
    cut = max(1, int(np.floor(total * cut_frac)))
    t = step + 1
    p = t / cut if t < cut else 1.0 - (t - cut) / max(1.0, cut * (1.0 / cut_frac - 1.0))
    return (1.0 + max(p, 0.0) * (ratio - 1.0)) / ratio


class _APLCNet(nn.Module):
    """encoder -> pooled -> dropout -> Linear(d, d_h) -> dropout -> APLC."""

    def __init__(self, encoder, d_h: int, clusters, q: float, pooling: str, dropout: float):
        super().__init__()
        self.encoder, self.pooling = encoder, pooling
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(encoder.config.hidden_size, d_h)
        self.aplc = APLCLayer(d_h, clusters, q)

    def hidden_state(self, input_ids, attention_mask):
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.dropout(self.hidden(self.dropout(pool_hidden_states(states, attention_mask, self.pooling))))

    def forward(self, input_ids, attention_mask):
        """(head logits, [tail logits]): through ``forward`` so that DDP sees the whole step."""
        return self.aplc(self.hidden_state(input_ids, attention_mask))


class APLC:
    """The end-to-end APLC model. Build it with :meth:`train` or :meth:`load`.

    Attributes after fit: ``net_``, ``tokenizer_``, ``family_``, ``clusters_`` (label ids per
    cluster, head first), ``history_`` (step, loss, lrs), ``train_seconds_``.
    """

    def __init__(self, params: APLCParams | None = None):
        self.params = params or APLCParams()

    @classmethod
    def train(cls, encoder_dir: str, input_ids, attention_mask, Y, params: APLCParams | None = None,
              log: Callable[[str], None] | None = None, checkpoint_dir=None) -> "APLC":
        """input_ids, attention_mask : int (N, T); Y : sparse (N, L) 0/1 training labels. With
        ``checkpoint_dir``, checkpoints and resume as :meth:`TransformerMatcher.train` does."""
        return cls(params)._fit(encoder_dir, input_ids, attention_mask, Y, log, checkpoint_dir)

    def _fit(self, encoder_dir: str, input_ids, attention_mask, Y, log, checkpoint_dir) -> "APLC":
        from transformers import AutoModel, AutoTokenizer

        p = self.params
        ids, mask = check_tokens(input_ids, attention_mask)
        Y = sp.csr_matrix(Y, dtype=np.float32)
        if Y.shape[0] != ids.shape[0] or ids.shape[0] == 0:
            raise ValueError(f"Y has {Y.shape[0]} rows and input_ids {ids.shape[0]}: both must be the same, > 0")
        device, rank, world = start_distributed(resolve_device(p.device))
        if rank != 0:  # one voice: rank 0 logs and shows progress
            log = lambda message: None  # noqa: E731
        say = log or (lambda message: None)
        family = encoder_family(encoder_dir)
        torch.manual_seed(p.seed)
        freq = np.asarray((Y > 0).sum(axis=0)).ravel()
        clusters = partition_labels(freq, p.proportions)
        net = _APLCNet(AutoModel.from_pretrained(str(encoder_dir)), p.hidden_size, clusters, p.q,
                       resolve_pooling(p.pooling, family), p.dropout)
        if p.prior_init:
            net.aplc.init_prior(Y)
        net = net.to(device).train()
        model = data_parallel(net, device, p.seed, rank, world)
        groups = [{"params": list(net.encoder.parameters()), "lr": p.encoder_learning_rate},
                  {"params": list(net.hidden.parameters()), "lr": p.hidden_learning_rate},
                  {"params": list(net.aplc.parameters()), "lr": p.aplc_learning_rate}]
        optimizer = torch.optim.AdamW(groups, weight_decay=p.weight_decay, fused=device.type in ("cpu", "cuda"))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: slanted_triangular(s, p.max_steps, p.cut_frac, p.ratio))
        batches = EpochBatches(ids.shape[0], p.batch_size, p.seed)
        say(f"APLC: {Y.shape[1]} labels in clusters of {[len(c) for c in clusters]}, d_h {p.hidden_size}"
            + (f"; data-parallel over {world} processes ({device.type})" if world > 1 else ""))
        checkpoints = state = None
        if checkpoint_dir is not None and p.checkpoint_every > 0:
            warn = log or (lambda message: warnings.warn(message, stacklevel=2))
            fingerprint = {**{k: v for k, v in p.to_dict().items() if k not in _NOT_IN_FINGERPRINT},
                           "encoder_dir": str(encoder_dir), "N": Y.shape[0], "L": Y.shape[1], "world_size": world,
                           "data_sha256": data_digest(ids, mask, Y.indptr, Y.indices)}
            checkpoints = Checkpoints(checkpoint_dir, fingerprint, p.checkpoint_every, "aplc", warn, rank)
            state = checkpoints.read()

        def row_losses(model_, rows):
            head, tails = model_(ids[rows].to(device), mask[rows].to(device))
            return aplc_row_losses(head.float(), [t.float() for t in tails], Y[rows.numpy()], net.aplc)

        settings = LoopSettings(name="aplc", steps=p.max_steps, batch_size=p.batch_size, grad_accum=p.grad_accum,
                                max_grad_norm=p.max_grad_norm, precision=p.precision, log_every=p.log_every,
                                hint="lower the learning rates")
        start = time.perf_counter()
        history = train_loop(net, row_losses, optimizer, scheduler, batches, settings, device=device, model=model,
                             rank=rank, world=world, checkpoints=checkpoints, resume=state, log=log)
        self.net_, self.family_, self.clusters_, self.history_ = net.eval(), family, clusters, history
        self.tokenizer_ = AutoTokenizer.from_pretrained(str(encoder_dir), use_fast=True)
        self.device_, self.train_seconds_ = device, time.perf_counter() - start
        return self

    @torch.no_grad()
    def predict(self, input_ids, attention_mask, pred_params: APLCPredParams | None = None, **overrides):
        """Top-k labels by p(l | x): CSR float32 (N, L), the stored values are the probabilities.
        pred_params : default ``params.pred_params()``; keyword overrides (``top_k=``,
        ``batch_size=``) replace its fields."""
        pp = (pred_params or self.params.pred_params()).with_overrides(**overrides)
        k = min(pp.top_k, self.net_.aplc.n_labels)
        batch_size = pp.batch_size
        ids, mask = check_tokens(input_ids, attention_mask)
        n = ids.shape[0]
        cols = np.zeros((n, k), dtype=np.int64)
        vals = np.zeros((n, k), dtype=np.float32)
        self.net_.eval()
        for sl, batch_ids, batch_mask in tqdm(length_sorted_batches(ids, mask, batch_size), total=-(-n // batch_size),
                                              desc="aplc predict", unit="batch", mininterval=1.0):
            with autocast(self.device_, self.params.precision):
                h = self.net_.hidden_state(batch_ids.to(self.device_), batch_mask.to(self.device_))
            logp = self.net_.aplc.log_probs(h.float())
            top, idx = torch.topk(logp, k, dim=1)  # exact ties are immaterial here
            cols[sl], vals[sl] = idx.cpu().numpy(), top.exp().cpu().numpy()
        return sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n * k + 1, k)),
                             shape=(n, self.net_.aplc.n_labels), dtype=np.float32).sorted_indices()

    def save(self, folder) -> None:
        """Encoder + tokenizer (save_pretrained), ``aplc.pt`` (hidden + APLC weights), ``aplc.json``."""
        with atomic_path(folder, is_dir=True) as tmp:
            self.net_.encoder.save_pretrained(str(tmp))
            self.tokenizer_.save_pretrained(str(tmp))
            state = {k: v.detach().cpu() for k, v in self.net_.state_dict().items() if not k.startswith("encoder.")}
            torch.save(state, tmp / HEAD_FILE)
            meta = {"params": self.params.to_dict(), "family": self.family_, "pooling": self.net_.pooling,
                    "clusters": [c.tolist() for c in self.clusters_],
                    "train_seconds": self.train_seconds_,
                    "history": [h for h in self.history_ if h["step"] % self.params.log_every == 0]}
            (tmp / META_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder, device: str = "auto") -> "APLC":
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        for name in (META_FILE, HEAD_FILE, "config.json"):
            if not (folder / name).is_file():
                raise ValueError(f"{folder} is not a saved APLC model: {name} is missing")
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        model = cls(APLCParams.from_dict(meta["params"]))
        p = model.params
        clusters = [np.asarray(c, dtype=np.int64) for c in meta["clusters"]]
        net = _APLCNet(AutoModel.from_pretrained(str(folder)), p.hidden_size, clusters, p.q, meta["pooling"], p.dropout)
        missing, unexpected = net.load_state_dict(torch.load(folder / HEAD_FILE, map_location="cpu", weights_only=True),
                                                  strict=False)  # the encoder's weights come from save_pretrained
        missing = [k for k in missing if not k.startswith("encoder.")]
        if missing or unexpected:
            raise ValueError(f"{folder / HEAD_FILE}: does not match aplc.json (missing {missing}, unexpected {unexpected})")
        model.device_ = resolve_device(device)
        model.net_, model.family_, model.clusters_ = net.to(model.device_).eval(), meta["family"], clusters
        model.tokenizer_ = AutoTokenizer.from_pretrained(str(folder), use_fast=True)
        model.history_, model.train_seconds_ = meta["history"], meta["train_seconds"]
        return model
