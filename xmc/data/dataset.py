"""The canonical in-memory and on-disk form of a multi-label text dataset.

Every reader in :mod:`xmc.data.readers` returns a :class:`Dataset`; :meth:`Dataset.save` writes the
``prepared/`` folder described in ``docs/architecture.md`` and :meth:`Dataset.load` reads it back.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
import unicodedata
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from xmc import io

#: File names of the canonical folder, in one place so readers of ``prepared/`` agree.
FILES = {
    "train_texts": "train.txt",
    "test_texts": "test.txt",
    "Y_train": "Y.train.npz",
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
    """Texts and labels of one dataset, split into train and test.

    Attributes
    ----------
    train_texts, test_texts : list of str, lengths N_train and N_test
    Y_train : sparse CSR float32 of shape (N_train, L), 0/1
    Y_test : sparse CSR float32 of shape (N_test, L), 0/1
    label_names : list of str, length L; column j of Y is label ``label_names[j]``
    label_texts : list of str, length L; human-readable label text (used by ``text-emb``)

    L is the union of the labels of train *and* test: a test label never seen in training keeps
    its column, so it still counts in the recall/precision denominators.
    """

    train_texts: list[str]
    test_texts: list[str]
    Y_train: sp.csr_matrix
    Y_test: sp.csr_matrix
    label_names: list[str]
    label_texts: list[str]

    @classmethod
    def from_label_lists(cls, train_texts: Sequence[str], train_labels: Sequence[Sequence[str]],
                         test_texts: Sequence[str], test_labels: Sequence[Sequence[str]],
                         label_text: Callable[[str], str] | None = None) -> "Dataset":
        """Build a dataset from per-instance label-name lists.

        Columns are the union of train and test labels in a deterministic order (numeric for
        integer ids, else lexicographic). ``label_text(name)`` gives a label's text (default: the
        name itself).
        """
        names = set()
        for labels in (*train_labels, *test_labels):
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
        for split, texts, Y in (("train", self.train_texts, self.Y_train),
                                ("test", self.test_texts, self.Y_test)):
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

    def subsample(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> "Dataset":
        """A seeded random subset of ``n_train`` train and ``n_test`` test instances (None: all),
        in their original order; labels with no positive instance left in either split are dropped.

        Returns a new Dataset (self is unchanged).
        """
        rng = np.random.default_rng(seed)

        def pick(n, total, split):
            if n is None or n >= total:
                return np.arange(total)
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"subsample n_{split}: expected a positive integer, got {n!r}")
            return np.sort(rng.choice(total, size=n, replace=False))

        tr = pick(n_train, len(self.train_texts), "train")
        te = pick(n_test, len(self.test_texts), "test")
        Y_train, Y_test = sp.csr_matrix(self.Y_train)[tr], sp.csr_matrix(self.Y_test)[te]
        keep = np.flatnonzero((Y_train.getnnz(axis=0) + Y_test.getnnz(axis=0)) > 0)
        return Dataset(
            train_texts=[self.train_texts[i] for i in tr],
            test_texts=[self.test_texts[i] for i in te],
            Y_train=sp.csr_matrix(Y_train[:, keep]),
            Y_test=sp.csr_matrix(Y_test[:, keep]),
            label_names=[self.label_names[j] for j in keep],
            label_texts=[self.label_texts[j] for j in keep],
        ).validate()

    def meta(self) -> dict:
        """Counts written to ``meta.json``."""
        Y_train, Y_test = sp.csr_matrix(self.Y_train), sp.csr_matrix(self.Y_test)
        train_pos = np.asarray((Y_train != 0).sum(axis=0)).ravel()
        test_pos = np.asarray((Y_test != 0).sum(axis=0)).ravel()
        n_train, n_test = Y_train.shape[0], Y_test.shape[0]
        n_docs = n_train + n_test
        return {
            "n_train": n_train,
            "n_test": n_test,
            "n_labels": self.n_labels,
            "n_labels_train": int((train_pos > 0).sum()),
            "n_labels_test": int((test_pos > 0).sum()),
            "n_unseen_test_labels": int(((test_pos > 0) & (train_pos == 0)).sum()),
            "n_test_docs_with_unseen_labels": int(
                (Y_test[:, np.flatnonzero(train_pos == 0)].getnnz(axis=1) > 0).sum()),
            "avg_labels_per_doc": (Y_train.nnz + Y_test.nnz) / n_docs if n_docs else 0.0,
            "avg_labels_per_doc_train": Y_train.nnz / n_train if n_train else 0.0,
            "avg_labels_per_doc_test": Y_test.nnz / n_test if n_test else 0.0,
        }

    def save(self, folder) -> None:
        """Write the canonical folder (see ``FILES``); each file is written atomically."""
        self.validate()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        io.write_lines(folder / FILES["train_texts"], (normalize_text(t) for t in self.train_texts))
        io.write_lines(folder / FILES["test_texts"], (normalize_text(t) for t in self.test_texts))
        io.save_csr(folder / FILES["Y_train"], binarize(self.Y_train))
        io.save_csr(folder / FILES["Y_test"], binarize(self.Y_test))
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
            train_texts=io.read_lines(folder / FILES["train_texts"]),
            test_texts=io.read_lines(folder / FILES["test_texts"]),
            Y_train=io.load_csr(folder / FILES["Y_train"]).astype(np.float32),
            Y_test=io.load_csr(folder / FILES["Y_test"]).astype(np.float32),
            label_names=io.read_lines(folder / FILES["label_names"]),
            label_texts=io.read_lines(folder / FILES["label_texts"]),
        ).validate()
