"""Synthetic extreme multi-label text data, deterministic from a seed, for scaling runs.

Each label owns a few topic words; a document draws its labels from a long-tailed (Zipf)
popularity, then its words: a ``signal`` share from its labels' topic words, the rest from a
Zipf background over the vocabulary. So label frequencies look like the paper's datasets' (a few
labels on many documents, most on very few), documents carry several labels, and the words
depend on the labels, which a model can learn. Words are tokens ``w<id>`` (``\\w\\w+`` for
TF-IDF; a transformer's tokenizer splits them into word pieces).

:func:`generate` returns texts and label lists; :func:`write_attentionxml` writes the
AttentionXML layout that the ``attentionxml`` reader (and so ``prepare``) reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SyntheticSpec", "generate", "split", "write_attentionxml"]


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and shape of a synthetic dataset.

    n_labels : L. vocabulary : V background words (topic words are drawn from the same V).
    words_per_doc : mean document length (Poisson, at least 5). labels_per_doc : mean labels per
    document (1 + Poisson(mean - 1)). topic_words : words each label owns. signal : share of a
    document's words taken from its labels' topic words. label_skew / word_skew : Zipf exponents of
    the label popularity and the background word frequencies. cover_labels : every label on at
    least one training document (part 0), as in the paper's datasets, whose label sets come from
    their documents; without it a Zipf draw leaves most tail labels unused (1.2M draws over 500k
    labels use about 209k of them).
    """

    n_labels: int = 1000
    vocabulary: int = 20000
    words_per_doc: int = 60
    labels_per_doc: float = 3.0
    topic_words: int = 8
    signal: float = 0.4
    label_skew: float = 1.0
    word_skew: float = 1.1
    cover_labels: bool = True

    def __post_init__(self):
        for name in ("n_labels", "vocabulary", "words_per_doc", "topic_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.n_labels < 2:
            raise ValueError(f"n_labels: an XMC dataset needs at least 2 labels, got {self.n_labels}")
        if not 1.0 <= self.labels_per_doc <= self.n_labels:
            raise ValueError(f"labels_per_doc must be in [1, n_labels], got {self.labels_per_doc!r}")
        if not 0.0 <= self.signal <= 1.0:
            raise ValueError(f"signal must be in [0, 1], got {self.signal!r}")
        if self.label_skew < 0 or self.word_skew < 0:
            raise ValueError("label_skew and word_skew must be >= 0")


def _zipf_cdf(n: int, skew: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** skew
    return np.cumsum(p / p.sum())


def _draw(cdf: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws from the distribution of ``cdf`` (inverse transform: O(size log n))."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def generate(n_docs: int, spec: SyntheticSpec = SyntheticSpec(), seed: int = 0):
    """``n_docs`` documents: (texts, label lists), each label list sorted, labels named ``label_<id>``.

    The label popularity ranks are shuffled over the label ids (seeded), so popular labels are not
    simply the low ids. The same ``spec`` and ``seed`` give the same label topics; pass another
    ``seed`` offset through :func:`split` to draw a test set from the same labels.
    """
    return split(n_docs, spec, seed, part=0)


def split(n_docs: int, spec: SyntheticSpec, seed: int, part: int):
    """The documents of ``part`` (0: train, 1: test, ...) of the dataset ``(spec, seed)``: the
    labels' popularity and topic words come from ``seed`` alone, the documents from (seed, part)."""
    if isinstance(n_docs, bool) or not isinstance(n_docs, (int, np.integer)) or n_docs < 1:
        raise ValueError(f"n_docs: expected a positive integer, got {n_docs!r}")
    world = np.random.default_rng([seed, 0])
    popularity = world.permutation(spec.n_labels)  # popularity rank r -> label id
    topics = world.integers(0, spec.vocabulary, size=(spec.n_labels, spec.topic_words))
    label_cdf, word_cdf = _zipf_cdf(spec.n_labels, spec.label_skew), _zipf_cdf(spec.vocabulary, spec.word_skew)
    word_ids = world.permutation(spec.vocabulary)  # frequency rank -> word id

    rng = np.random.default_rng([seed, 1 + part])
    n_labels = 1 + rng.poisson(spec.labels_per_doc - 1.0, size=n_docs)
    drawn = popularity[_draw(label_cdf, int(n_labels.sum()), rng)]
    # labels the draw missed, each added to one random training document (sorted by document)
    unused = np.setdiff1d(np.arange(spec.n_labels), drawn) if spec.cover_labels and part == 0 else drawn[:0]
    host = rng.integers(0, n_docs, size=unused.size)
    order = np.argsort(host, kind="stable")
    unused, bounds = unused[order], np.searchsorted(host[order], np.arange(n_docs + 1))
    lengths = np.maximum(5, rng.poisson(spec.words_per_doc, size=n_docs))
    n_signal = rng.binomial(lengths, spec.signal)
    background = word_ids[_draw(word_cdf, int((lengths - n_signal).sum()), rng)]
    pick = rng.random(int(n_signal.sum()))  # which of the document's labels, then which topic word
    which_word = rng.integers(0, spec.topic_words, size=int(n_signal.sum()))

    texts, labels = [], []
    lo = bg = sg = 0
    for i in range(n_docs):
        doc_labels = np.unique(np.concatenate([drawn[lo:lo + n_labels[i]], unused[bounds[i]:bounds[i + 1]]]))
        lo += n_labels[i]
        s = n_signal[i]
        owners = doc_labels[(pick[sg:sg + s] * len(doc_labels)).astype(np.int64)]
        words = np.concatenate([topics[owners, which_word[sg:sg + s]], background[bg:bg + lengths[i] - s]])
        sg, bg = sg + s, bg + lengths[i] - s
        rng.shuffle(words)
        texts.append(" ".join(f"w{w}" for w in words))
        labels.append([f"label_{j}" for j in doc_labels])
    return texts, labels


def write_attentionxml(folder, n_train: int, n_test: int, spec: SyntheticSpec = SyntheticSpec(),
                       seed: int = 0) -> Path:
    """Write ``{train,test}_{texts,labels}.txt`` (AttentionXML form) of a synthetic dataset."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for part, (name, n) in enumerate((("train", n_train), ("test", n_test))):
        texts, labels = split(n, spec, seed, part)
        (folder / f"{name}_texts.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        (folder / f"{name}_labels.txt").write_text("".join(" ".join(ls) + "\n" for ls in labels),
                                                   encoding="utf-8")
    return folder
