"""The canonical in-memory and on-disk form of a multi-label text dataset.

Every reader in :mod:`xmc.data.readers` returns a :class:`Dataset`; :meth:`Dataset.save` writes the
``prepared/`` folder described in ``docs/architecture.md`` and :meth:`Dataset.load` reads it back.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
import unicodedata
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from xmc import io

#: The splits, in file order: models train on ``train`` only; every choice (ensemble rule and
#: members, K, top-b, steps) is made on ``valid``; ``test`` is only scored.
SPLITS = ("train", "valid", "test")
#: File names of the canonical folder, in one place so readers of ``prepared/`` agree.
FILES = {
    "train_texts": "train.txt",
    "valid_texts": "valid.txt",
    "test_texts": "test.txt",
    "Y_train": "Y.train.npz",
    "Y_valid": "Y.valid.npz",
    "Y_test": "Y.test.npz",
    "label_names": "label_names.txt",
    "label_texts": "label_text.txt",
    "meta": "meta.json",
}


def normalize_text(text: str) -> str:
    """Collapse every run of whitespace (newlines, tabs, CR, NBSP, ...) into one space and strip,
    drop byte-order marks, and put the text in Unicode NFC form.

    One text per line is the canonical form, so no line separator of any kind may survive;
    ``str.split()`` knows all of Unicode's, including those ``str.splitlines`` would split on.
    NFC: ``café`` typed as one code point or as ``e`` + combining accent is one label, one token.
    """
    return unicodedata.normalize("NFC", " ".join(text.replace("\ufeff", "").split()))


def is_invisible(text: str) -> bool:
    """True for a text made only of whitespace and invisible format characters (zero-width
    space/joiners, word joiner, byte-order mark...): empty to a reader, though not to ``strip``."""
    return all(c.isspace() or unicodedata.category(c) == "Cf" for c in text)


def label_sort_key(names: Iterable[str]) -> Callable[[str], object]:
    """Sort key for label names: numeric when every name is a decimal integer (EUROVOC ids), else text."""
    if all(n.isdecimal() for n in names):
        return lambda n: (int(n), n)
    return lambda n: n


def binarize(Y) -> sp.csr_matrix:
    """CSR float32 copy of ``Y`` with every stored nonzero set to 1 and sorted, deduplicated indices."""
    Y = sp.csr_matrix(Y, dtype=np.float32, copy=True)
    Y.sum_duplicates()
    Y.eliminate_zeros()
    Y.data[:] = 1.0
    Y.sort_indices()
    return Y


def label_matrix(label_lists: Sequence[Sequence[str]], column: dict[str, int]) -> sp.csr_matrix:
    """CSR float32 (N, len(column)) with a 1 at (i, column[l]) for each label l of instance i."""
    indptr = np.zeros(len(label_lists) + 1, dtype=np.int64)
    indices: list[int] = []
    for i, labels in enumerate(label_lists):
        indices.extend(column[lab] for lab in labels)
        indptr[i + 1] = len(indices)
    data = np.ones(len(indices), dtype=np.float32)
    Y = sp.csr_matrix((data, np.asarray(indices, dtype=np.int64), indptr),
                      shape=(len(label_lists), len(column)))
    return binarize(Y)


@dataclass
class Dataset:
    """Texts and labels of one dataset, split into train, validation and test.

    Attributes
    ----------
    train_texts, test_texts, valid_texts : list of str, lengths N_train, N_test and N_valid
    Y_train, Y_test, Y_valid : sparse CSR float32 of shape (N_split, L), 0/1
    label_names : list of str, length L; column j of Y is label ``label_names[j]``
    label_texts : list of str, length L; human-readable label text (used by ``text-emb``)

    L is the union of the labels of every split: a test label never seen in training keeps its
    column, so it still counts in the recall/precision denominators. A reader leaves the validation
    split empty when the data ships none; :meth:`hold_out_validation` then carves it from train.
    """

    train_texts: list[str]
    test_texts: list[str]
    Y_train: sp.csr_matrix
    Y_test: sp.csr_matrix
    label_names: list[str]
    label_texts: list[str]
    valid_texts: list[str] = field(default_factory=list)
    Y_valid: sp.csr_matrix | None = None  # None: no validation split (N_valid = 0)

    def __post_init__(self):
        if self.Y_valid is None:
            self.Y_valid = sp.csr_matrix((len(self.valid_texts), len(self.label_names)), dtype=np.float32)

    def split(self, name: str) -> tuple[list[str], sp.csr_matrix]:
        """(texts, Y) of split ``name`` (one of :data:`SPLITS`)."""
        if name not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {name!r}")
        return getattr(self, f"{name}_texts"), getattr(self, f"Y_{name}")

    @classmethod
    def from_label_lists(cls, train_texts: Sequence[str], train_labels: Sequence[Sequence[str]],
                         test_texts: Sequence[str], test_labels: Sequence[Sequence[str]],
                         label_text: Callable[[str], str] | None = None,
                         valid_texts: Sequence[str] = (), valid_labels: Sequence[Sequence[str]] = ()) -> "Dataset":
        """Build a dataset from per-instance label-name lists.

        Columns are the union of the labels of every split in a deterministic order (numeric for
        integer ids, else lexicographic). ``label_text(name)`` gives a label's text (default: the
        name itself). ``valid_*``: the validation split the data ships, if any.
        """
        names = set()
        for labels in (*train_labels, *valid_labels, *test_labels):
            names.update(labels)
        label_names = sorted(names, key=label_sort_key(names))
        column = {name: j for j, name in enumerate(label_names)}
        label_text = label_text or (lambda name: name)
        return cls(
            train_texts=[normalize_text(t) for t in train_texts],
            test_texts=[normalize_text(t) for t in test_texts],
            Y_train=label_matrix(train_labels, column),
            Y_test=label_matrix(test_labels, column),
            label_names=label_names,
            label_texts=[normalize_text(label_text(n)) or n for n in label_names],
            valid_texts=[normalize_text(t) for t in valid_texts],
            Y_valid=label_matrix(valid_labels, column),
        ).validate()

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def validate(self) -> "Dataset":
        """Check that sizes agree and no text is empty; raise ValueError naming what is wrong.

        Returns self, so it can be chained.
        """
        L = len(self.label_names)
        if len(self.label_texts) != L:
            raise ValueError(f"label_texts has {len(self.label_texts)} entries but label_names has {L}")
        for split in SPLITS:
            texts, Y = self.split(split)
            if not sp.issparse(Y) or Y.ndim != 2:
                raise ValueError(f"Y_{split} must be a 2-D scipy sparse matrix, got {type(Y).__name__}")
            if Y.shape != (len(texts), L):
                raise ValueError(
                    f"Y_{split} has shape {Y.shape}, expected ({len(texts)}, {L}) = "
                    f"({split} texts, labels)")
            for i, text in enumerate(texts):
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(f"{split} text at line {i + 1} is empty")
            if Y.nnz and not np.all(sp.csr_matrix(Y).data == 1):
                raise ValueError(f"Y_{split} must contain only 0/1 entries")
        for what, values in (("label_names", self.label_names), ("label_texts", self.label_texts)):
            for j, value in enumerate(values):
                if not isinstance(value, str) or not value.strip() or value != normalize_text(value):
                    raise ValueError(
                        f"{what}[{j}] = {value!r}: expected a non-empty single-line string "
                        "without leading/trailing or repeated whitespace")
        if len(set(self.label_names)) != L:
            seen, dup = set(), None
            for name in self.label_names:
                if name in seen:
                    dup = name
                    break
                seen.add(name)
            raise ValueError(f"label_names must be unique; {dup!r} occurs more than once")
        return self

    def subsample(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                  n_valid: int | None = None, test_from: str = "test") -> "Dataset":
        """A seeded random subset of ``n_train`` train, ``n_valid`` validation and ``n_test`` test
        instances (None: all), in their original order; labels with no positive instance left in
        any split are dropped.

        ``test_from`` "valid" or "train" never reads the shipped test split: the subset's test
        instances are drawn from that split instead, disjoint from the ones it keeps (a study that
        tunes settings scores its "test" on documents the final run's test never contains).
        Returns a new Dataset (self is unchanged).
        """
        if test_from not in SPLITS:
            raise ValueError(f"subsample test_from: expected one of {SPLITS}, got {test_from!r}")
        rng = np.random.default_rng(seed)

        def pick(n, total, split):
            if n is None or n >= total:
                return np.arange(total)
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"subsample n_{split}: expected a positive integer, got {n!r}")
            return np.sort(rng.choice(total, size=n, replace=False))

        if test_from != "test":
            return self._test_from(test_from, {"train": n_train, "valid": n_valid, "test": n_test}, pick)
        # Drawn in this order so that a dataset without a validation split subsamples as before.
        rows = {"train": pick(n_train, len(self.train_texts), "train"),
                "test": pick(n_test, len(self.test_texts), "test"),
                "valid": pick(n_valid, len(self.valid_texts), "valid")}
        return self._take(rows)

    def _test_from(self, source: str, n: dict, pick) -> "Dataset":
        """subsample's test_from: the shipped test split is dropped and ``n["test"]`` instances of
        ``source`` become the test split; the rest of ``source`` is subsampled as usual."""
        texts, Y = self.split(source)
        total = len(texts)
        if n["test"] is None:
            raise ValueError(f"subsample test_from {source}: give n_test (how many {source} documents become test)")
        if n["test"] >= total:
            raise ValueError(f"subsample test_from {source}: n_test ({n['test']}) must be below the "
                             f"{total} {source} documents, which must keep some for {source}")
        test = pick(n["test"], total, "test")
        rest = np.setdiff1d(np.arange(total), test)
        kept = rest[pick(n[source], len(rest), source)]
        other = "valid" if source == "train" else "train"
        parts = {source: kept, "test": test, other: pick(n[other], len(self.split(other)[0]), other)}
        # test rows are read from `source`: build the split from there, then take rows per split
        moved = Dataset(train_texts=list(self.train_texts), valid_texts=list(self.valid_texts),
                        test_texts=list(texts), Y_train=self.Y_train, Y_valid=self.Y_valid,
                        Y_test=sp.csr_matrix(Y), label_names=self.label_names, label_texts=self.label_texts)
        return moved._take(parts)

    def _take(self, rows: dict[str, np.ndarray]) -> "Dataset":
        """The dataset of the given rows of each split, without labels no split uses any more."""
        parts = {}
        for split in SPLITS:
            texts, Y = self.split(split)
            parts[split] = ([texts[i] for i in rows[split]], sp.csr_matrix(Y)[rows[split]])
        keep = np.flatnonzero(sum(Y.getnnz(axis=0) for _, Y in parts.values()) > 0)
        return Dataset(
            train_texts=parts["train"][0], test_texts=parts["test"][0], valid_texts=parts["valid"][0],
            Y_train=sp.csr_matrix(parts["train"][1][:, keep]), Y_test=sp.csr_matrix(parts["test"][1][:, keep]),
            Y_valid=sp.csr_matrix(parts["valid"][1][:, keep]),
            label_names=[self.label_names[j] for j in keep],
            label_texts=[self.label_texts[j] for j in keep],
        ).validate()

    def hold_out_validation(self, fraction: float, seed: int = 0) -> "Dataset":
        """Move a seeded random ``fraction`` of the training instances into the validation split
        (for data that ships none); the rest stay train, in their original order. A dataset that
        already has a validation split is returned unchanged. Label columns are kept as they are.

        Returns a new Dataset (self is unchanged).
        """
        if len(self.valid_texts):
            return self
        if isinstance(fraction, bool) or not 0 < fraction < 1:
            raise ValueError(f"validation fraction: expected a number in (0, 1), got {fraction!r}")
        n = len(self.train_texts)
        n_valid = int(round(fraction * n))
        if n_valid < 1 or n_valid >= n:
            raise ValueError(f"validation fraction {fraction} of {n} training instances leaves no "
                             "validation or no training instance: raise or lower validation.fraction")
        valid = np.sort(np.random.default_rng(seed).choice(n, size=n_valid, replace=False))
        train = np.setdiff1d(np.arange(n), valid)
        Y = sp.csr_matrix(self.Y_train)
        return Dataset(
            train_texts=[self.train_texts[i] for i in train], test_texts=list(self.test_texts),
            valid_texts=[self.train_texts[i] for i in valid],
            Y_train=sp.csr_matrix(Y[train]), Y_test=sp.csr_matrix(self.Y_test), Y_valid=sp.csr_matrix(Y[valid]),
            label_names=list(self.label_names), label_texts=list(self.label_texts),
        ).validate()

    def meta(self) -> dict:
        """Counts written to ``meta.json``."""
        Ys = {split: sp.csr_matrix(self.split(split)[1]) for split in SPLITS}
        pos = {split: np.asarray((Y != 0).sum(axis=0)).ravel() for split, Y in Ys.items()}
        n = {split: Y.shape[0] for split, Y in Ys.items()}
        n_docs = sum(n.values())
        out = {f"n_{split}": n[split] for split in SPLITS}
        out["n_labels"] = self.n_labels
        out.update({f"n_labels_{split}": int((pos[split] > 0).sum()) for split in SPLITS})
        unseen = np.flatnonzero(pos["train"] == 0)
        out.update({
            "n_unseen_test_labels": int(((pos["test"] > 0) & (pos["train"] == 0)).sum()),
            "n_test_docs_with_unseen_labels": int((Ys["test"][:, unseen].getnnz(axis=1) > 0).sum()),
            "avg_labels_per_doc": sum(Y.nnz for Y in Ys.values()) / n_docs if n_docs else 0.0,
        })
        out.update({f"avg_labels_per_doc_{split}": Ys[split].nnz / n[split] if n[split] else 0.0
                    for split in SPLITS})
        return out

    def save(self, folder) -> None:
        """Write the canonical folder (see ``FILES``); each file is written atomically."""
        self.validate()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            texts, Y = self.split(split)
            io.write_lines(folder / FILES[f"{split}_texts"], (normalize_text(t) for t in texts))
            io.save_csr(folder / FILES[f"Y_{split}"], binarize(Y))
        io.write_lines(folder / FILES["label_names"], self.label_names)
        io.write_lines(folder / FILES["label_texts"], self.label_texts)
        # meta.json last: its presence means the rest is complete.
        io.save_json(folder / FILES["meta"], self.meta())

    @classmethod
    def load(cls, folder) -> "Dataset":
        """Read a folder written by :meth:`save`."""
        folder = Path(folder)
        missing = [name for key, name in FILES.items() if key != "meta" and not (folder / name).is_file()]
        if missing:
            raise ValueError(f"{folder} is not a prepared dataset folder: missing {', '.join(missing)}")
        # read_lines splits on universal newlines; safe because save() collapsed every line
        # separator inside a text.
        return cls(
            **{f"{split}_texts": io.read_lines(folder / FILES[f"{split}_texts"]) for split in SPLITS},
            **{f"Y_{split}": io.load_csr(folder / FILES[f"Y_{split}"]).astype(np.float32) for split in SPLITS},
            label_names=io.read_lines(folder / FILES["label_names"]),
            label_texts=io.read_lines(folder / FILES["label_texts"]),
        ).validate()
