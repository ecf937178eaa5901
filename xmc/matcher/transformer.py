"""The paper's matcher: a fine-tuned transformer encoder with a linear head over K clusters.

g(x, k) = w_k^T phi_neural(x), trained with the squared hinge loss against M = binarise(Y C).
``TransformerMatcher.train`` fine-tunes, ``predict`` keeps each instance's top-b cluster scores
and the pooled embedding phi_neural, ``save``/``load`` round-trip a self-describing folder
(encoder + tokenizer as ``save_pretrained`` writes them, ``head.pt``, ``matcher.json``).
With a ``checkpoint_dir``, training writes ``checkpoint.pt`` there every ``checkpoint_every`` steps
and a restarted run continues from it, bit-identically on CPU.

Data-parallel training: started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment; see
``xmc.matcher.launch``), each process takes a rank-strided share of every optimiser step's rows and
DDP averages the gradients, so the total batch stays ``batch_size x grad_accum`` whatever the number
of devices and the loss trajectory equals the single-process one (up to float rounding; dropout
masks differ).
"""
from __future__ import annotations

import dataclasses
import json
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
from xmc.matcher.beam import beam_scores
from xmc.params import FromDict, check_positive_int
from xmc.training import (Checkpoints, EpochBatches, LoopSettings, autocast, int8_linear_layers,
                          check_tokens, data_digest, data_parallel, length_sorted_batches, shorten_tokens,
                          start_distributed, train_loop)
from xmc.vocabulary import HEAD_INITS, POOLINGS, PRECISIONS, PREDICT_PRECISIONS

HEAD_FILE, META_FILE, TREE_FILE = "head.pt", "matcher.json", "tree_heads.pt"
# Settings that change neither the trained weights nor the loss history: a checkpoint written under
# other values of these is still a valid start.
_NOT_IN_FINGERPRINT = ("checkpoint_every", "log_every", "eval_batch_size", "top_b",
                       "gradient_checkpointing", "predict_precision")


def squared_hinge_loss(scores: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """Mean over i, k of max(0, 1 - M~_ik g_ik)^2 with M~ = 2M - 1.

    scores : float tensor (B, K), the matcher scores g. M : tensor (B, K) of 0/1 targets.
    """
    if scores.shape != M.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and M {tuple(M.shape)} must have the same shape")
    signs = 2.0 * M.to(scores.dtype) - 1.0
    return torch.clamp(1.0 - signs * scores, min=0.0).pow(2).mean()


def _row_hinge_losses(scores: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """Per-row mean over k of the squared hinge: (B,). Their weighted sum is a share of a batch loss."""
    signs = 2.0 * M.to(scores.dtype) - 1.0
    return torch.clamp(1.0 - signs * scores, min=0.0).pow(2).mean(dim=1)


def pool_hidden_states(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool last-layer states (B, T, d) into (B, d).

    "cls": the first attended token (position 0 with right padding, as BERT/RoBERTa);
    "mean": mean over attended tokens; "last": the last attended token (XLNet's <cls>).
    Positions come from ``attention_mask``, so left and right padding both work.
    """
    mask = attention_mask.to(torch.long)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if pooling == "cls":
        return hidden[rows, mask.argmax(dim=1)]  # argmax returns the first maximum
    if pooling == "last":
        last = mask.shape[1] - 1 - torch.flip(mask, dims=[1]).argmax(dim=1)
        return hidden[rows, last]
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"pooling must be one of 'cls', 'mean', 'last', got {pooling!r}")


def resolve_pooling(pooling: str, family: str) -> str:
    """"auto" means the token the family was pre-trained to summarise with: XLNet's last, else first."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if pooling == "auto":
        return "last" if family == "xlnet" else "cls"
    return pooling


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class MatcherParams(FromDict):
    """Training and prediction settings of the transformer matcher (defaults: the paper's Eurlex-4K).

    ``max_steps`` counts optimiser steps; each takes ``grad_accum`` micro-batches of ``batch_size``.
    ``precision`` "bf16" / "fp16" runs the forward pass under bfloat16 / float16 autocast (options for
    GPUs; fp16 adds loss scaling; fp32 is the paper's and the default). ``gradient_checkpointing``
    recomputes the encoder's activations in the backward pass: less memory, about 30% more time.
    Under data-parallel training ``batch_size x grad_accum`` stays the total batch of a step.
    ``checkpoint_every`` (optimiser steps; 0: never) applies when :meth:`TransformerMatcher.train`
    is given a ``checkpoint_dir``.
    ``head_init`` "probe" / "centroids" starts the cluster head from a closed-form fit on the
    pretrained encoder's embeddings of the training documents (xmc.matcher.head_init; "random": the
    paper's). ``train_max_length`` trains on each document's first tokens only (its closing special
    token kept); prediction still reads the full tokens.
    """

    config_section = "matcher"

    max_steps: int = 1000
    warmup_steps: int = 100
    learning_rate: float = 5e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.0
    batch_size: int = 16
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    dropout: float = 0.1
    pooling: str = "auto"
    seed: int = 0
    eval_batch_size: int = 64
    top_b: int = 10
    device: str = "auto"
    log_every: int = 10
    precision: str = "fp32"
    predict_precision: str | None = None
    checkpoint_every: int = 100
    gradient_checkpointing: bool = False
    head_init: str = "random"
    train_max_length: int | None = None

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            # YAML reads "5e-5" as a string; accept numbers written that way.
            if f.type in ("int", "float") and isinstance(value, str):
                try:
                    value = float(value) if f.type == "float" else int(value)
                except ValueError:
                    raise ValueError(f"matcher {f.name} must be a number, got {value!r}") from None
            if f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"matcher {f.name} must be true or false, got {value!r}")
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if (f.type == "int" and (not isinstance(value, int) or isinstance(value, bool))) or (
                    f.type == "float" and not isinstance(value, float)):
                raise ValueError(f"matcher {f.name} must be {f.type}, got {value!r}")
            setattr(self, f.name, value)
        positive = ("max_steps", "learning_rate", "batch_size", "grad_accum", "max_grad_norm",
                    "eval_batch_size", "top_b", "log_every")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"matcher {name} must be > 0, got {getattr(self, name)!r}")
        if self.head_learning_rate is not None:
            try:
                self.head_learning_rate = float(self.head_learning_rate)
            except (TypeError, ValueError):
                raise ValueError(f"matcher head_learning_rate must be a number, got {self.head_learning_rate!r}") from None
            if not self.head_learning_rate > 0:
                raise ValueError(f"matcher head_learning_rate must be > 0, got {self.head_learning_rate!r}")
        for name in ("warmup_steps", "weight_decay", "seed", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"matcher {name} must be >= 0, got {getattr(self, name)!r}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"matcher warmup_steps ({self.warmup_steps}) must not exceed "
                             f"max_steps ({self.max_steps})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"matcher dropout must be in [0, 1), got {self.dropout!r}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"matcher head_init must be one of {HEAD_INITS}, got {self.head_init!r}")
        if self.train_max_length is not None and (isinstance(self.train_max_length, bool) or not isinstance(
                self.train_max_length, int) or self.train_max_length < 2):
            raise ValueError(f"matcher train_max_length must be an integer >= 2 or null, got {self.train_max_length!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"matcher pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"matcher precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.predict_precision not in (None, *PREDICT_PRECISIONS):
            raise ValueError(f"matcher predict_precision must be one of {PREDICT_PRECISIONS}, "
                             f"got {self.predict_precision!r}")
        try:
            resolve_device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"matcher device must be 'auto', 'cpu', 'cuda' or 'cuda:N', "
                             f"got {self.device!r}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def pred_params(self) -> "MatcherPredParams":
        """The prediction settings these params carry (the config's ``matcher`` section holds both)."""
        return MatcherPredParams(top_b=self.top_b, batch_size=self.eval_batch_size,
                                 precision=self.predict_precision or self.precision)


@dataclass
class MatcherPredParams(FromDict):
    """Prediction settings of a transformer matcher (XR-Transformer's included): top_b clusters kept
    per row (a tree's beam width), rows per batch, precision (fp32, bf16, fp16 or auto autocast, or
    int8: the encoder's linear layers dynamically quantised, CPU). Defaults:
    :meth:`MatcherParams.pred_params`."""

    config_section = "matcher prediction"

    top_b: int = 10
    batch_size: int = 64
    precision: str = "fp32"

    def __post_init__(self):
        check_positive_int(self.top_b, "top_b")
        check_positive_int(self.batch_size, "batch_size")
        if self.precision not in PREDICT_PRECISIONS:
            raise ValueError(f"predict precision must be one of {PREDICT_PRECISIONS}, got {self.precision!r}")


class MatcherNet(nn.Module):
    """encoder -> pooled phi_neural -> dropout -> Linear(hidden, K)."""

    def __init__(self, encoder: nn.Module, n_clusters: int, pooling: str, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_clusters)
        self.pooling = pooling

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        emb = pool_hidden_states(hidden, attention_mask, self.pooling)
        return self.head(self.dropout(emb)), emb


def int8_encoder(net: MatcherNet) -> MatcherNet:
    """A copy of ``net`` whose encoder's nn.Linear layers run int8 (dynamic quantisation: weights
    int8, activations quantised per batch); the K-way head stays float, so cluster scores keep
    their resolution."""
    import copy

    quantized = copy.deepcopy(net).cpu().eval()
    quantized.encoder = int8_linear_layers(quantized.encoder)
    return quantized


def checkpoint_params(p: MatcherParams) -> dict:
    """The params a checkpoint must share with the run that resumes it."""
    return {k: v for k, v in p.to_dict().items() if k not in _NOT_IN_FINGERPRINT}


def _fingerprint(p: MatcherParams, encoder_dir, ids, mask, M: sp.csr_matrix, world: int = 1) -> dict:
    """What a checkpoint must share with this run to be resumed: the training params, the encoder
    and the data (N, K and a digest of tokens and targets)."""
    return {**checkpoint_params(p), "encoder_dir": str(encoder_dir), "N": M.shape[0], "K": M.shape[1],
            "data_sha256": data_digest(ids, mask, M.indptr, M.indices, M.data), "world_size": world}


def loop_settings(p: MatcherParams, name: str = "matcher", steps: int | None = None) -> LoopSettings:
    """The training loop's settings from the matcher's params."""
    return LoopSettings(name=name, steps=p.max_steps if steps is None else steps, batch_size=p.batch_size,
                        grad_accum=p.grad_accum, max_grad_norm=p.max_grad_norm, precision=p.precision,
                        log_every=p.log_every, memory_hint="gradient_checkpointing",
                        hint=f"lower learning_rate ({p.learning_rate:g}) or use precision fp32 (now {p.precision})")


def build_net(encoder_dir, n_clusters: int, p: MatcherParams, device: torch.device) -> tuple[MatcherNet, str]:
    """A fresh (encoder + K-way head) network in train mode, and the encoder's family; with
    ``gradient_checkpointing`` switched on when the params ask for it."""
    from transformers import AutoModel

    family = encoder_family(encoder_dir)
    net = MatcherNet(AutoModel.from_pretrained(str(encoder_dir)), n_clusters,
                     resolve_pooling(p.pooling, family), p.dropout).to(device).train()
    if p.gradient_checkpointing:
        if not getattr(net.encoder, "supports_gradient_checkpointing", False):
            raise ValueError(f"matcher gradient_checkpointing: the {family} encoder "
                             f"{encoder_dir} does not support it; set it to false")
        net.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return net, family


class TransformerMatcher:
    """A fine-tuned encoder with a K-way linear head. Build it with :meth:`train` or :meth:`load`.

    Attributes: ``encoder`` (transformers model), ``head`` (nn.Linear(hidden, K)), ``pooling``,
    ``family``, ``n_clusters``, ``params`` (MatcherParams), ``tokenizer``, ``device``,
    ``history_`` (one dict per optimiser step: step, loss, lr).
    """

    def __init__(self, net: MatcherNet, tokenizer, family: str, params: MatcherParams, device, history=(),
                 tree=None):
        self.net, self.tokenizer, self.family, self.params = net, tokenizer, family, params
        self.device = torch.device(device)
        self.history_ = list(history)
        # XR-Transformer: the coarser levels' heads as [(K_t, nn.Linear)], coarse to fine; prediction
        # then beam-searches through them (xmc.matcher.beam). None: a flat matcher scoring all K.
        self.tree_ = None if tree is None else [(int(k), h.to(self.device).eval()) for k, h in tree]

    def to(self, device) -> "TransformerMatcher":
        """Move the encoder and heads (the tree's included) to ``device`` (a torch.device)."""
        self.device = torch.device(device)
        self.net.to(self.device)
        for _, head in self.tree_ or ():
            head.to(self.device)
        return self

    encoder = property(lambda self: self.net.encoder)
    head = property(lambda self: self.net.head)
    pooling = property(lambda self: self.net.pooling)
    n_clusters = property(lambda self: self.net.head.out_features)

    @classmethod
    def train(cls, encoder_dir: str, input_ids, attention_mask, M, params: MatcherParams | None = None,
              log: Callable[[str], None] | None = None, checkpoint_dir=None,
              init_embeddings=None) -> "TransformerMatcher":
        """Fine-tune ``encoder_dir`` with a new head on tokens (N, T) and 0/1 targets M (N, K).

        With ``checkpoint_dir``, every ``params.checkpoint_every`` optimiser steps the whole training
        state (weights, optimiser, scheduler, RNGs, data order, history) is written atomically to
        ``checkpoint_dir/checkpoint.pt``; a run that finds a checkpoint of the same configuration
        there continues from it, and ends with the weights and history of an uninterrupted run.
        A checkpoint of another configuration is ignored with a warning (to ``log``, else
        ``warnings.warn``). ``checkpoint_every`` 0 neither reads nor writes checkpoints.
        """
        from transformers import AutoTokenizer, get_linear_schedule_with_warmup

        p = params or MatcherParams()
        ids, mask = check_tokens(input_ids, attention_mask)
        M = sp.csr_matrix(M, dtype=np.float32)
        if M.shape[0] != ids.shape[0]:
            raise ValueError(f"M has {M.shape[0]} rows but input_ids has {ids.shape[0]}; "
                             "both must be indexed by the same training instances")
        if ids.shape[0] == 0:
            raise ValueError("input_ids has no rows; the matcher needs at least one training instance")
        device, rank, world = start_distributed(resolve_device(p.device))
        if rank != 0:  # one voice: rank 0 logs and shows progress
            log = lambda message: None  # noqa: E731
        say = log or (lambda message: None)
        torch.manual_seed(p.seed)  # covers head init, any newly initialised encoder part, dropout
        net, family = build_net(encoder_dir, M.shape[1], p, device)
        if p.head_init != "random":
            init_head(net, p, ids, mask, M, init_embeddings, device, say)
        if p.train_max_length is not None and p.train_max_length < ids.shape[1]:
            ids, mask = shorten_tokens(ids, mask, p.train_max_length)
            say(f"training on the first {p.train_max_length} tokens of each document (prediction reads all)")
        model = data_parallel(net, device, p.seed, rank, world)
        tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), use_fast=True)
        optimizer = make_optimizer(net, p, device)
        scheduler = get_linear_schedule_with_warmup(optimizer, p.warmup_steps, p.max_steps)
        batches = EpochBatches(ids.shape[0], p.batch_size, p.seed)
        if world > 1:
            say(f"data-parallel over {world} processes ({device.type}): total batch "
                f"{p.batch_size * p.grad_accum} = about {-(-p.batch_size * p.grad_accum // world)} rows "
                f"per process per step, in micro-batches of at most {p.batch_size}")
        checkpoints = state = None
        if checkpoint_dir is not None and p.checkpoint_every > 0:
            warn = log or (lambda message: warnings.warn(message, stacklevel=3))
            checkpoints = Checkpoints(checkpoint_dir, _fingerprint(p, encoder_dir, ids, mask, M, world),
                                      p.checkpoint_every, "matcher", warn, rank)
            state = checkpoints.read()

        def row_losses(model_, rows):
            scores, _ = model_(ids[rows].to(device), mask[rows].to(device))
            return _row_hinge_losses(scores.float(), torch.from_numpy(M[rows.numpy()].toarray()).to(device))

        history = train_loop(net, row_losses, optimizer, scheduler, batches, loop_settings(p), device=device,
                             model=model, rank=rank, world=world, checkpoints=checkpoints, resume=state, log=log)
        if p.gradient_checkpointing:
            net.encoder.gradient_checkpointing_disable()
        return cls(net, tokenizer, family, p, device, history)

    @torch.no_grad()
    def predict(self, input_ids, attention_mask, pred_params: MatcherPredParams | None = None, **overrides):
        """Score all K clusters (a tree matcher: the children of its beam, by their path's decision
        value, see :func:`xmc.matcher.beam.beam_scores`); keep each row's top-b.

        Returns ``(topb, emb)``: topb CSR float32 (N, K) with exactly min(b, K) stored scores g
        per row (ties broken by the lower cluster index; column indices sorted), and emb float32
        (N, hidden) the pooled phi_neural. pred_params : default ``params.pred_params()``; keyword
        overrides (``top_b=``, ``batch_size=``, ``precision=``) replace its fields.
        """
        pp = (pred_params or self.params.pred_params()).with_overrides(**overrides)
        precision, batch_size = pp.precision, pp.batch_size
        net = self.net
        if precision == "int8":
            if self.device.type != "cpu":
                raise ValueError(f"predict precision int8 (dynamic quantisation) runs on the CPU, not {self.device}; "
                                 "use bf16 or fp16 on a GPU")
            if getattr(self, "_int8_net", None) is None:  # once per matcher: predict_matcher calls per split
                self._int8_net = int8_encoder(self.net)
            net, precision = self._int8_net, "fp32"
        b = min(pp.top_b, self.n_clusters)
        ids, mask = check_tokens(input_ids, attention_mask)
        n = ids.shape[0]
        cols = np.zeros((n, b), dtype=np.int32)
        vals = np.zeros((n, b), dtype=np.float32)
        emb = np.zeros((n, self.encoder.config.hidden_size), dtype=np.float32)
        net.eval()
        # Length-sorted batches cut to their longest row: no pass over padding (outputs equal).
        for sl, batch_ids, batch_mask in tqdm(length_sorted_batches(ids, mask, batch_size), total=-(-n // batch_size),
                                              desc="matcher predict", unit="batch", mininterval=1.0):
            with autocast(self.device, precision):
                scores, pooled = net(batch_ids.to(self.device), batch_mask.to(self.device))
            scores = scores.float()
            if self.tree_:
                scores = beam_scores(pooled.float(), self.tree_, scores, b, path=True)
            # A stable descending sort keeps the lower cluster index first among equal scores.
            top_scores, top_idx = torch.sort(scores, dim=1, descending=True, stable=True)
            top_idx, order = torch.sort(top_idx[:, :b], dim=1)  # CSR wants sorted columns
            cols[sl] = top_idx.cpu().numpy()
            vals[sl] = torch.gather(top_scores[:, :b], 1, order).cpu().numpy()
            emb[sl] = pooled.float().cpu().numpy()
        topb = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n * b + 1, b)),
                             shape=(n, self.n_clusters), dtype=np.float32)
        return topb, emb

    def save(self, folder) -> None:
        """Write encoder + tokenizer (``save_pretrained``), ``head.pt`` and ``matcher.json``."""
        with atomic_path(folder, is_dir=True) as tmp:
            self.encoder.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
            torch.save({k: v.detach().cpu() for k, v in self.head.state_dict().items()}, tmp / HEAD_FILE)
            if self.tree_:
                torch.save([{k: v.detach().cpu() for k, v in h.state_dict().items()} for _, h in self.tree_],
                           tmp / TREE_FILE)
            meta = {"params": self.params.to_dict(), "n_clusters": self.n_clusters,
                    "tree_levels": [k for k, _ in self.tree_] if self.tree_ else None,
                    "pooling": self.pooling, "family": self.family,
                    "hidden_size": self.encoder.config.hidden_size,
                    # the loss curve at the logging interval keeps the file small on long runs
                    "history": [h for h in self.history_ if h["step"] % self.params.log_every == 0
                                or h is self.history_[-1]]}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder, device: str = "auto") -> "TransformerMatcher":
        """Read a folder written by :meth:`save`; the model is put in eval mode on ``device``."""
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        for name in (META_FILE, HEAD_FILE, "config.json"):
            if not (folder / name).is_file():
                raise ValueError(f"{folder} is not a saved TransformerMatcher: {name} is missing")
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        params = MatcherParams.from_dict(meta["params"])
        net = MatcherNet(AutoModel.from_pretrained(str(folder)), meta["n_clusters"], meta["pooling"],
                   params.dropout)
        net.head.load_state_dict(torch.load(folder / HEAD_FILE, map_location="cpu", weights_only=True))
        tree = None
        if meta.get("tree_levels"):
            if not (folder / TREE_FILE).is_file():
                raise ValueError(f"{folder} is not a saved TransformerMatcher: {TREE_FILE} is missing "
                                 f"(matcher.json names tree levels {meta['tree_levels']})")
            states = torch.load(folder / TREE_FILE, map_location="cpu", weights_only=True)
            tree = []
            for k, state in zip(meta["tree_levels"], states):
                h = nn.Linear(net.head.in_features, int(k))
                h.load_state_dict(state)
                tree.append((int(k), h))
        dev = resolve_device(device)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), use_fast=True)
        return cls(net.to(dev).eval(), tokenizer, meta["family"], params, dev, meta.get("history", ()), tree)


@torch.no_grad()
def pooled_embeddings(net: MatcherNet, ids: torch.Tensor, mask: torch.Tensor, batch_size: int, precision: str,
                      device: torch.device) -> np.ndarray:
    """The network's pooled phi (N, hidden) in eval mode, float32 (the head init's input when the
    workflow has no pretrained embeddings of the same pooling)."""
    was_training = net.training
    net.eval()
    out = np.zeros((ids.shape[0], net.head.in_features), dtype=np.float32)
    for sl, batch_ids, batch_mask in tqdm(length_sorted_batches(ids, mask, batch_size), total=-(-ids.shape[0] // batch_size),
                                          desc="head init: embed", unit="batch", mininterval=1.0):
        with autocast(device, precision):
            _, pooled = net(batch_ids.to(device), batch_mask.to(device))
        out[sl] = pooled.float().cpu().numpy()
    net.train(was_training)
    return out


@torch.no_grad()
def init_head(net: MatcherNet, p: MatcherParams, ids, mask, M: sp.csr_matrix, embeddings, device, say) -> None:
    """Set the head to ``p.head_init``'s closed-form fit (xmc.matcher.head_init) on the pretrained
    embeddings of the training documents (``embeddings``, else computed with the network)."""
    from xmc.matcher.head_init import fit_head, shortlist_recall_of_head

    if embeddings is None:
        say(f"head init {p.head_init}: embedding the {ids.shape[0]} training documents")
        embeddings = pooled_embeddings(net, ids, mask, p.eval_batch_size, p.precision, device)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.shape != (ids.shape[0], net.head.in_features):
        raise ValueError(f"head init: embeddings of shape {embeddings.shape}, expected "
                         f"({ids.shape[0]}, {net.head.in_features}) = (training documents, the encoder's hidden size)")
    W, b = fit_head(p.head_init, embeddings, M)
    net.head.weight.copy_(torch.from_numpy(W))
    net.head.bias.copy_(torch.from_numpy(b))
    say(f"head init {p.head_init}: step 0 holds {shortlist_recall_of_head(embeddings, M, W, b, p.top_b):.1f}% "
        f"of the training documents' positive clusters in its top-{p.top_b}")


def make_optimizer(net, p: MatcherParams, device) -> torch.optim.AdamW:
    """AdamW over the encoder and the cluster head. As in BERT: no weight decay on biases and LayerNorm
    weights (the 1-D parameters). The new head may take its own (larger) learning rate: it starts from
    random weights."""
    head_lr = p.head_learning_rate or p.learning_rate
    groups = []
    for module, lr in ((net.encoder, p.learning_rate), (net.head, head_lr)):
        params = list(module.parameters())
        groups += [{"params": [q for q in params if q.ndim >= 2], "weight_decay": p.weight_decay, "lr": lr},
                   {"params": [q for q in params if q.ndim < 2], "weight_decay": 0.0, "lr": lr}]
    # fused: one kernel for all parameters, ~8x faster on CPU
    return torch.optim.AdamW(groups, lr=p.learning_rate, fused=device.type in ("cpu", "cuda"))


def train_matcher(encoder_dir: str, input_ids, attention_mask, M, params: MatcherParams | None = None,
                  log: Callable[[str], None] | None = None, checkpoint_dir=None) -> TransformerMatcher:
    """Functional alias of :meth:`TransformerMatcher.train`."""
    return TransformerMatcher.train(encoder_dir, input_ids, attention_mask, M, params, log,
                                    checkpoint_dir=checkpoint_dir)


def predict_matcher(matcher, input_ids, attention_mask, pred_params: MatcherPredParams | None = None,
                    device: str = "auto", **overrides):
    """:meth:`TransformerMatcher.predict` for a matcher or a saved matcher folder."""
    if not isinstance(matcher, TransformerMatcher):
        matcher = TransformerMatcher.load(matcher, device=device)
    return matcher.predict(input_ids, attention_mask, pred_params, **overrides)
