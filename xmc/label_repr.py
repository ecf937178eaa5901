"""Label representations psi(l) used to cluster labels: PIFA and text embeddings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm


def pifa(Y, X):
    """Positive Instance Feature Aggregation: psi(l) = v_l / ||v_l||, v_l = sum_{i: Y_il = 1} X_i.

    Parameters
    ----------
    Y : sparse or dense matrix of shape (n_instances, n_labels), 0/1.
    X : sparse or dense matrix of shape (n_instances, n_features), instance features.

    Returns
    -------
    Z : shape (n_labels, n_features), float32; CSR if X is sparse, a numpy array otherwise.
        Rows are l2-normalised; labels without positive instances keep a zero row.
    """
    Y = Y if sp.issparse(Y) else np.asarray(Y)
    X = X if sp.issparse(X) else np.asarray(X)
    if Y.ndim != 2 or X.ndim != 2:
        raise ValueError(f"pifa expects 2-D Y (N, L) and X (N, D), got Y.ndim={Y.ndim}, "
                         f"X.ndim={X.ndim}")
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"pifa: Y has {Y.shape[0]} rows (instances) but X has {X.shape[0]}; "
                         "both must be indexed by the same instances")
    Yt = sp.csr_matrix(Y, dtype=np.float32).T.tocsr()
    if sp.issparse(X):
        V = (Yt @ sp.csr_matrix(X, dtype=np.float32)).tocsr()
        norms = np.sqrt(np.asarray(V.multiply(V).sum(axis=1)).ravel())
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        Z = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ V, dtype=np.float32)
        Z.eliminate_zeros()
        Z.sort_indices()
        return Z
    V = np.asarray(Yt @ np.asarray(X, dtype=np.float32), dtype=np.float32)
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    return np.divide(V, norms, out=np.zeros_like(V), where=norms > 0).astype(np.float32)


def fill_missing_label_texts(texts: Sequence[str], names: Sequence[str]) -> tuple[list[str], list[int]]:
    """Label texts for ``text-emb``, with each empty text replaced by the label's name.

    Returns the texts and the indices that fell back, so the caller can report them.
    """
    if len(texts) != len(names):
        raise ValueError(f"{len(texts)} label texts for {len(names)} label names")
    missing = [i for i, t in enumerate(texts) if not t.strip()]
    filled = list(texts)
    for i in missing:
        if not names[i].strip():
            raise ValueError(f"label {i} has neither a text nor a name")
        filled[i] = names[i]
    return filled, missing


def _check_texts(texts) -> list:
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, got a single string")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty; expected one text per label")
    return texts


@dataclass
class TextEncoder:
    """A pretrained encoder loaded for :func:`embed_texts` (kept in memory by callers that embed
    many times, such as a loaded bundle). Build it with :func:`load_text_encoder`."""
    tokenizer: object
    model: object
    device: str
    precision: str  # the autocast precision of the pass ("fp32" once int8 has quantised the model)


def load_text_encoder(encoder_dir: str, device: str = "cpu", precision: str = "fp32") -> TextEncoder:
    """Load ``encoder_dir``'s tokenizer and model for :func:`embed_texts`. ``precision``: fp32,
    bf16 / fp16 / auto autocast (auto: bf16 on a CPU with native bf16), or int8 (the encoder's
    linear layers dynamically quantised, CPU only), as the matcher's prediction pass."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from xmc.training import int8_linear_layers
    from xmc.vocabulary import PREDICT_PRECISIONS

    if precision not in PREDICT_PRECISIONS:
        raise ValueError(f"precision must be one of {PREDICT_PRECISIONS}, got {precision!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision == "int8" and device != "cpu":
        raise ValueError(f"precision int8 (dynamic quantisation) runs on the CPU, not {device}")
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), use_fast=True)
    model = AutoModel.from_pretrained(str(encoder_dir)).to(device).eval()
    if precision == "int8":
        model, precision = int8_linear_layers(model), "fp32"
    return TextEncoder(tokenizer, model, device, precision)


def embed_texts(texts: Sequence[str], encoder: TextEncoder, max_length: int = 32,
                batch_size: int = 64) -> np.ndarray:
    """Mean of the encoder's last-layer token states over each text (padding excluded through the
    attention mask, special tokens included). Returns float32 (n_texts, hidden_size), not normalised."""
    import torch

    from xmc.training import autocast

    texts = _check_texts(texts)
    tokenizer, model, device, precision = encoder.tokenizer, encoder.model, encoder.device, encoder.precision
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    # longest first, batches of similar lengths: little padding to encode (outputs equal)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    with torch.no_grad():
        for start in tqdm(range(0, len(texts), batch_size), desc="text-emb", unit="batch",
                          mininterval=2.0):
            rows = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            mask = enc["attention_mask"].to(device)
            with autocast(torch.device(device), precision):
                hidden = model(input_ids=enc["input_ids"].to(device),
                               attention_mask=mask).last_hidden_state.float()
            m = mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
            out[rows] = mean.float().cpu().numpy()
    return out


def text_embedding(texts: Sequence[str], encoder_dir: str, max_length: int = 32,
                   batch_size: int = 64, device: str = "cpu", precision: str = "fp32") -> np.ndarray:
    """The paper's text-emb: mean of a pretrained encoder's last-layer token states over each text
    (:func:`load_text_encoder`, then :func:`embed_texts`). Returns float32 of shape
    (n_texts, hidden_size), not normalised."""
    texts = _check_texts(texts)  # before the encoder is loaded
    return embed_texts(texts, load_text_encoder(encoder_dir, device, precision), max_length, batch_size)
