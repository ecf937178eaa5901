"""Readers of the raw dataset formats; each returns a validated :class:`~xmc.data.dataset.Dataset`.

``READERS[fmt](root, encoding="utf-8", **opts)``:

- ``eurlex57k``: per-document JSON (Chalkidis et al., 2019): ``train/*.json``, ``test/*.json``,
  optional ``dev/*.json`` (the validation split; merged into train with ``use_dev=True``) and ``EURLEX57K.json``.
- ``attentionxml``: ``{train,test}_texts.txt`` and ``{train,test}_labels.txt`` (label names).
- ``xmc-base``: PECOS ``X.{trn,tst}.txt``, ``Y.{trn,tst}.npz`` and ``output-items.txt``
  (positive entries of Y are labels; negative ones are refused).

``encoding`` applies to label-name files (the original Eurlex-4K label map is ISO-8859-1);
``text_encoding`` (default utf-8) to the texts. The format's folder may sit one or two levels
below ``root`` (archives often wrap it in a folder of their own).

Every reader refuses what would silently give wrong data: C0 control characters in texts (NUL and
the like; tab, newline and CR are whitespace; ``control_characters="replace"`` turns them into spaces
instead; C1 controls, Windows-1252 punctuation mis-decoded upstream, always are; the log counts
both), label
lines that look like lists of another separator (attentionxml: set ``label_separator``), lines
ended by carriage returns only, and blank lines (one blank line at the very end of a file is what
many editors write: it is dropped and logged). A byte-order mark at the start of a file is dropped.
"""
from __future__ import annotations

import ast
import inspect
import json
import logging
import re
from pathlib import Path

import scipy.sparse as sp

from xmc.data.dataset import Dataset, binarize, is_invisible, normalize_text

_MAX_DEPTH = 2
CONTROL_CHARACTERS = ("error", "replace")
# C0 control characters and DEL except tab, newline and carriage return (whitespace, which
# normalize_text collapses): NUL bytes and the like are what a binary or corrupted file leaves.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# C1 controls (U+0080-U+009F) are Windows-1252 punctuation decoded as Latin-1 upstream: EURLEX57K
# has 848 of them in 786 documents (an em dash as U+0097). They become spaces, counted in the log.
_C1 = re.compile("[\x80-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Separators of label lists in other tools' files (AttentionXML's own is whitespace).
_LIST_SEPARATORS = ",;|"
log = logging.getLogger("xmc.data.readers")


def _find_base(root, required: list[str], fmt: str) -> Path:
    """The folder at most two levels below ``root`` (``root`` included) holding every ``required`` entry."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{fmt} dataset root {root} is not a folder")
    level = [root]
    for _ in range(_MAX_DEPTH + 1):
        found = [d for d in level if all((d / r).exists() for r in required)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(f"{fmt}: several folders under {root} hold {required}: "
                             f"{', '.join(str(d) for d in found)}; point root at one of them")
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
    raise ValueError(f"{fmt}: no folder under {root} (searched {_MAX_DEPTH} levels deep) holds {required}")


def _read_text_lines(path: Path, encoding: str) -> list[str]:
    """Lines of a one-item-per-line file, split on "\\n" only (a stray "\\r" inside a text must not
    shift every following line); a trailing "\\r" (CRLF files) is dropped, and so is a byte-order
    mark at the start (it would glue itself to the first text or label), and one blank line at the
    very end (logged). A file whose only line breaks are carriage returns (old Mac line endings) is
    refused by name."""
    try:
        with open(path, encoding=encoding, newline="\n") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: cannot decode as {encoding} ({e}); pass the right encoding "
                         "(the dataset's encoding, or texts_encoding for texts)") from e
    except LookupError as e:
        raise ValueError(f"{path}: unknown encoding {encoding!r} ({e})") from e
    lines[0] = lines[0].removeprefix("\ufeff")
    if len(lines) == 1 and "\r" in lines[0].rstrip("\r"):
        raise ValueError(f"{path}: its lines end in carriage returns only (old Mac line "
                         f"endings); convert them to \\n (e.g. tr '\\r' '\\n')")
    if lines[-1] == "":  # the final newline ends the last line; it starts no new one
        lines.pop()
        if len(lines) > 1 and lines[-1].strip("\r") == "" and lines[-2].strip("\r") != "":
            lines.pop()
            log.info("%s: dropped the blank line at its end", path)
    return [line.rstrip("\r") for line in lines]


def clean_controls(text: str, where: str, mode: str = "error") -> tuple[str, int]:
    """``text`` without control characters, and how many were replaced by spaces: C0 controls and
    DEL (tab, newline and CR aside) are refused naming ``where`` (file and line) in mode "error" and
    replaced in mode "replace"; C1 controls are replaced in both."""
    if mode not in CONTROL_CHARACTERS:
        raise ValueError(f"control_characters must be one of {CONTROL_CHARACTERS}, got {mode!r}")
    surrogate = _SURROGATE.search(text)
    if surrogate:  # e.g. a JSON "\\ud800" escape: half a character, which no file can store
        raise ValueError(f"{where}: invalid Unicode {surrogate.group()!r} (a lone surrogate, half of a "
                         "character); fix the source text")
    found = _CONTROL.findall(text)
    if found and mode == "error":
        raise ValueError(f"{where}: control character {found[0]!r} ({len(found)} in this text); a binary "
                         f"or corrupted file? Set the dataset's control_characters: replace to read them "
                         f"as spaces")
    c1 = _C1.findall(text)
    if not found and not c1:
        return text, 0
    return _C1.sub(" ", _CONTROL.sub(" ", text)), len(found) + len(c1)


def _read_texts(path: Path, encoding: str, control_characters: str = "error") -> list[str]:
    texts, replaced = [], 0
    for i, line in enumerate(_read_text_lines(path, encoding), start=1):
        line, n = clean_controls(line, f"{path}: line {i}", control_characters)
        replaced += n
        text = normalize_text(line)
        if not text:
            raise ValueError(f"{path}: line {i} is an empty text")
        if is_invisible(text):
            raise ValueError(f"{path}: line {i} holds only invisible characters (zero-width spaces or "
                             f"joiners, byte-order marks: {text!r}); an empty text")
        texts.append(text)
    if replaced:
        log.info("%s: replaced %d control characters with spaces", path, replaced)
    return texts


def _check_label_lists(lines: list[list[str]], path: Path) -> None:
    """Stop when whitespace-separated label lines look like lists of another separator: every
    line a single "label" and some of them holding ``,`` ``;`` or ``|``, or two names that differ
    only by a trailing separator (``a,`` and ``a`` from ``a, b``)."""
    names = {label for labels in lines for label in labels}
    for i, labels in enumerate(lines, start=1):
        for label in labels:
            sep = label[-1] if label[-1] in _LIST_SEPARATORS else None
            if sep and len(label) > 1 and label[:-1] in names:
                raise ValueError(f"{path}: line {i}: labels {label!r} and {label[:-1]!r} differ only by a "
                                 f"trailing {sep!r}: is this file a {sep!r}-separated list? Set the dataset's "
                                 f"label_separator: {sep!r}")
    if lines and all(len(labels) == 1 for labels in lines):
        for i, (label,) in enumerate(lines, start=1):
            sep = next((c for c in _LIST_SEPARATORS if c in label), None)
            if sep:
                raise ValueError(f"{path}: line {i}: every document has exactly one label and {label!r} "
                                 f"holds {sep!r}: is this file a {sep!r}-separated list? Set the dataset's "
                                 f"label_separator: {sep!r}")


def _check_labels(labels: list[str], where: str) -> list[str]:
    """The labels of one document in NFC form; a control character (NUL...) or an invisible-only
    name is refused, naming ``where``."""
    if not labels:
        raise ValueError(f"{where}: no labels")
    for label in labels:
        bad = _CONTROL.search(label) or _SURROGATE.search(label)
        if bad:
            raise ValueError(f"{where}: label {label!r} holds the control character {bad.group()!r}; "
                             "a binary or corrupted labels file?")
    labels = [normalize_text(label) for label in labels]
    seen = set()
    for label in labels:
        if not label or is_invisible(label):
            raise ValueError(f"{where}: a label made only of invisible characters (zero-width, "
                             "byte-order mark)")
        if label in seen:
            raise ValueError(f"{where}: duplicate label {label!r}")
        seen.add(label)
    return labels


# --------------------------------------------------------------------------- eurlex57k
def _as_list(value, path: Path, field: str) -> list:
    """A list field, or the Python repr of one (as some EURLEX57K copies store it)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as e:
            raise ValueError(f"{path}: field {field!r} is a string but not the repr of a list") from e
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{path}: field {field!r} must be a list of strings (or its repr)")
    return value


def _read_json(path: Path, encoding: str):
    """A JSON file (a byte-order mark at its start dropped)."""
    try:
        return json.loads(path.read_text(encoding=encoding).removeprefix("\ufeff"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from e
    except LookupError as e:
        raise ValueError(f"{path}: unknown encoding {encoding!r} ({e})") from e


def _eurlex_doc(path: Path, encoding: str, control_characters: str = "error") -> tuple[str, list[str]]:
    doc = _read_json(path, encoding)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object")
    parts = []
    for field in ("title", "header", "recitals"):
        value = doc.get(field) or ""
        if not isinstance(value, str):
            raise ValueError(f"{path}: field {field!r} must be a string")
        parts.append(value)
    body = doc.get("main_body") or []
    parts.extend(_as_list(body, path, "main_body"))
    text, replaced = clean_controls(" ".join(parts), str(path), control_characters)
    text = normalize_text(text)
    if not text or is_invisible(text):
        raise ValueError(f"{path}: empty text (title, header, recitals and main_body are all empty "
                         "or invisible characters)")
    if "concepts" not in doc:
        raise ValueError(f"{path}: missing field 'concepts'")
    concepts = _check_labels([c.strip() for c in _as_list(doc["concepts"], path, "concepts")], str(path))
    return text, concepts, replaced


def _eurlex_split(base: Path, split: str, encoding: str, label_map: dict,
                  label_map_path: Path, control_characters: str = "error") -> tuple[list[str], list[list[str]]]:
    files = sorted((base / split).glob("*.json"), key=lambda p: p.name)
    if not files:
        raise ValueError(f"eurlex57k: no *.json documents in {base / split}")
    texts, labels, replaced = [], [], 0
    for path in files:
        text, concepts, n = _eurlex_doc(path, encoding, control_characters)
        replaced += n
        unknown = [c for c in concepts if c not in label_map]
        if unknown:  # a typo'd or foreign id would otherwise become a label of its own
            raise ValueError(f"{path}: concept {unknown[0]!r} is not in the label map {label_map_path}")
        texts.append(text)
        labels.append(concepts)
    if replaced:
        log.info("eurlex57k %s: replaced %d control characters with spaces", split, replaced)
    return texts, labels


def read_eurlex57k(root, encoding: str = "utf-8", *, use_dev: bool = False,
                   text_encoding: str = "utf-8", concepts_file=None, control_characters: str = "error") -> Dataset:
    """Read EURLEX57K: documents sorted by file name; text = title + header + recitals + main_body.
    ``dev/``, where present, is the validation split (``use_dev=True``: merged into train instead).

    Labels are EUROVOC concept ids; a label's text is its descriptor (``label`` in
    ``EURLEX57K.json``, found beside ``train/`` or above it unless ``concepts_file`` is given),
    or the id when that entry has no label; a document naming a concept absent from the file is an
    error.
    """
    base = _find_base(root, ["train", "test"], "eurlex57k")
    if concepts_file is None:
        # Beside train/ or in a folder above it, up to root.
        root_r, base_r = Path(root).resolve(), base.resolve()
        candidates = [base_r, *(p for p in base_r.parents if p == root_r or root_r in p.parents)]
        concepts_file = next((d / "EURLEX57K.json" for d in candidates
                              if (d / "EURLEX57K.json").is_file()), None)
        if concepts_file is None:
            raise ValueError(f"eurlex57k: EURLEX57K.json not found in {base} or above it up to {root}; "
                             "pass concepts_file")
    concepts_file = Path(concepts_file)
    concepts = _read_json(concepts_file, encoding)
    if not isinstance(concepts, dict):
        raise ValueError(f"{concepts_file}: expected a JSON object concept id -> {{label, ...}}")

    split = dict(encoding=text_encoding, label_map=concepts, label_map_path=concepts_file,
                 control_characters=control_characters)
    train_texts, train_labels = _eurlex_split(base, "train", **split)
    dev_texts, dev_labels = [], []
    if (base / "dev").is_dir():  # the shipped validation split
        dev_texts, dev_labels = _eurlex_split(base, "dev", **split)
    if use_dev:  # legacy: dev trains too (the workflow then holds validation out of train)
        train_texts, train_labels = train_texts + dev_texts, train_labels + dev_labels
        dev_texts, dev_labels = [], []
    test_texts, test_labels = _eurlex_split(base, "test", **split)

    def label_text(cid: str) -> str:
        entry = concepts.get(cid)
        text = entry.get("label") if isinstance(entry, dict) else None
        return text if isinstance(text, str) and text.strip() else cid

    return Dataset.from_label_lists(train_texts, train_labels, test_texts, test_labels, label_text,
                                    valid_texts=dev_texts, valid_labels=dev_labels)


# --------------------------------------------------------------------------- attentionxml
def _attentionxml_split(base: Path, split: str, encoding: str, text_encoding: str, label_separator: str | None,
                        control_characters: str):
    texts_path, labels_path = base / f"{split}_texts.txt", base / f"{split}_labels.txt"
    texts = _read_texts(texts_path, text_encoding, control_characters)
    lines = _read_text_lines(labels_path, encoding)
    if label_separator is None:
        split_lines = [line.split() for line in lines]
        _check_label_lists(split_lines, labels_path)
    else:
        split_lines = [[name for name in (part.strip() for part in line.split(label_separator)) if name]
                       for line in lines]
    labels = [_check_labels(names, f"{labels_path}: line {i}") for i, names in enumerate(split_lines, start=1)]
    if len(labels) != len(texts):
        raise ValueError(f"{labels_path} has {len(labels)} lines but {texts_path} has {len(texts)}")
    return texts, labels


def read_attentionxml(root, encoding: str = "utf-8", *, text_encoding: str = "utf-8",
                      label_separator: str | None = None, control_characters: str = "error") -> Dataset:
    """Read the AttentionXML layout; labels are the names on each labels line (separated by
    whitespace, or by ``label_separator`` with the spaces around names stripped), in sorted order;
    a label's text is its name with ``_`` replaced by spaces."""
    if label_separator is not None and (not isinstance(label_separator, str) or not label_separator.strip()):
        raise ValueError(f"label_separator must be a non-blank string such as ',' (or null: whitespace), "
                         f"got {label_separator!r}")
    names = [f"{s}_{k}.txt" for s in ("train", "test") for k in ("texts", "labels")]
    base = _find_base(root, names, "attentionxml")
    opts = dict(encoding=encoding, text_encoding=text_encoding, label_separator=label_separator,
                control_characters=control_characters)
    train_texts, train_labels = _attentionxml_split(base, "train", **opts)
    test_texts, test_labels = _attentionxml_split(base, "test", **opts)
    return Dataset.from_label_lists(train_texts, train_labels, test_texts, test_labels,
                                    lambda name: name.replace("_", " "))


# --------------------------------------------------------------------------- xmc-base (PECOS)
def _load_npz(path: Path) -> sp.csr_matrix:
    try:
        return sp.load_npz(path).tocsr()
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a scipy sparse .npz file ({e})") from e


def read_xmc_base(root, encoding: str = "utf-8", *, text_encoding: str = "utf-8",
                  control_characters: str = "error") -> Dataset:
    """Read the PECOS xmc-base layout; label columns keep the order of ``Y.*.npz`` /
    ``output-items.txt`` and a label's text is its name. Nonzero entries of Y become 1."""
    names = ["X.trn.txt", "X.tst.txt", "Y.trn.npz", "Y.tst.npz", "output-items.txt"]
    base = _find_base(root, names, "xmc-base")
    items_path = base / "output-items.txt"
    label_names = [normalize_text(n) for n in _read_text_lines(items_path, encoding)]
    for j, name in enumerate(label_names, start=1):
        if not name or is_invisible(name):
            raise ValueError(f"{items_path}: line {j} is an empty label name (or only invisible characters)")
        if _CONTROL.search(name):
            raise ValueError(f"{items_path}: line {j}: label {name!r} holds the control character "
                             f"{_CONTROL.search(name).group()!r}")
    splits = {}
    for split in ("trn", "tst"):
        x_path, y_path = base / f"X.{split}.txt", base / f"Y.{split}.npz"
        texts, Y = _read_texts(x_path, text_encoding, control_characters), _load_npz(y_path)
        if Y.shape[0] != len(texts):
            raise ValueError(f"{y_path} has {Y.shape[0]} rows but {x_path} has {len(texts)} texts")
        if Y.shape[1] != len(label_names):
            raise ValueError(f"{y_path} has {Y.shape[1]} columns but {items_path} "
                             f"has {len(label_names)} label names")
        if Y.nnz and (Y.data < 0).any():
            raise ValueError(f"{y_path}: {int((Y.data < 0).sum())} negative entries; xmc-base label "
                             f"matrices hold 1 (or a positive relevance) for a label and nothing else")
        splits[split] = (texts, binarize(Y))
    return Dataset(
        train_texts=splits["trn"][0], test_texts=splits["tst"][0],
        Y_train=splits["trn"][1], Y_test=splits["tst"][1],
        label_names=label_names, label_texts=list(label_names),
    ).validate()


READERS = {
    "eurlex57k": read_eurlex57k,
    "attentionxml": read_attentionxml,
    "xmc-base": read_xmc_base,
}


def read_dataset(fmt: str, root, **opts) -> Dataset:
    """``READERS[fmt](root, **opts)`` with ValueErrors naming an unknown format or option."""
    if fmt not in READERS:
        raise ValueError(f"unknown dataset format {fmt!r}; expected one of {sorted(READERS)}")
    reader = READERS[fmt]
    allowed = [p for p in inspect.signature(reader).parameters if p != "root"]
    for key in opts:
        if key not in allowed:
            raise ValueError(f"unknown option {key!r} for format {fmt!r}; expected one of {allowed}")
    return reader(root, **opts)
