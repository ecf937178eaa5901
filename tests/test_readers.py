"""xmc.data.readers and xmc.data.dataset on tiny hand-written fixtures, plus the embedded sample."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmc import io
from xmc.data.dataset import Dataset, normalize_text
from xmc.data.download import fetch, sha256_of
from xmc.data.readers import READERS, read_dataset

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "data" / "eurlex57k-sample"


def _rows(ds: Dataset, Y: sp.csr_matrix) -> list[list[str]]:
    """Label names of each row, for readable assertions."""
    Y = sp.csr_matrix(Y)
    return [sorted(ds.label_names[j] for j in Y.indices[Y.indptr[i]:Y.indptr[i + 1]])
            for i in range(Y.shape[0])]


# --------------------------------------------------------------------------- eurlex57k
CONCEPTS = {
    "10": {"concept_id": "10", "label": "fisheries", "alt_labels": [], "parents": []},
    "9": {"concept_id": "9", "label": "agriculture\npolicy", "alt_labels": ["farming"], "parents": []},
    "100": {"concept_id": "100", "label": "trade", "alt_labels": [], "parents": ["9"]},
    "555": {"concept_id": "555", "label": "", "alt_labels": [], "parents": []},  # no text: falls back to the id
}


def _doc(title, concepts, main_body=("Article 1 text.",), repr_form=False):
    body, cons = list(main_body), list(concepts)
    return {"celex_id": title, "uri": "http://x", "title": title, "header": "HEADER\nline",
            "recitals": "Whereas:\t(1) reasons", "main_body": repr(body) if repr_form else body,
            "concepts": repr(cons) if repr_form else cons, "attachments": "Done at Brussels."}


def _write_eurlex(root: Path, docs: dict[str, dict[str, dict]], concepts=CONCEPTS) -> Path:
    base = root / "outer" / "EURLEX57K"  # nested two levels, as archives often are
    for split, split_docs in docs.items():
        (base / split).mkdir(parents=True, exist_ok=True)
        for name, doc in split_docs.items():
            (base / split / name).write_text(json.dumps(doc), encoding="utf-8")
    if concepts is not None:
        (base / "EURLEX57K.json").write_text(json.dumps(concepts), encoding="utf-8")
    return base


@pytest.fixture
def eurlex_root(tmp_path):
    _write_eurlex(tmp_path, {
        # File names out of order on purpose: documents are sorted by file name.
        "train": {"32000R0002.json": _doc("Second", ["9", "100"], repr_form=True),
                  "32000R0001.json": _doc("First", ["10"], main_body=["Art 1.", "Art 2."])},
        "dev": {"32000R0003.json": _doc("Dev doc", ["100"])},
        "test": {"32001R0001.json": _doc("Test doc", ["10", "555"], repr_form=True)},
    })
    return tmp_path


def test_eurlex57k_reads_nested_folder_and_both_field_forms(eurlex_root):
    ds = READERS["eurlex57k"](eurlex_root)
    assert ds.train_texts == [
        "First HEADER line Whereas: (1) reasons Art 1. Art 2.",
        "Second HEADER line Whereas: (1) reasons Article 1 text.",
    ]
    assert ds.test_texts == ["Test doc HEADER line Whereas: (1) reasons Article 1 text."]
    # Numeric ids sort numerically; the unseen test label 555 keeps its column.
    assert ds.label_names == ["9", "10", "100", "555"]
    assert ds.label_texts == ["agriculture policy", "fisheries", "trade", "555"]
    assert _rows(ds, ds.Y_train) == [["10"], ["100", "9"]]
    assert _rows(ds, ds.Y_test) == [["10", "555"]]
    assert ds.Y_train.dtype == np.float32 and ds.Y_test.shape == (1, 4)
    meta = ds.meta()
    assert meta["n_labels"] == 4 and meta["n_labels_train"] == 3
    assert meta["n_unseen_test_labels"] == 1 and meta["n_test_docs_with_unseen_labels"] == 1


def test_eurlex57k_use_dev_merges_dev_into_train(eurlex_root):
    ds = read_dataset("eurlex57k", eurlex_root, use_dev=True)
    assert len(ds.train_texts) == 3 and ds.train_texts[2].startswith("Dev doc")
    assert _rows(ds, ds.Y_train)[2] == ["100"]


@pytest.mark.parametrize("doc,message", [
    (_doc("T", ["9"], main_body=["x"]) | {"main_body": "not a list repr ["}, "main_body"),
    (_doc("T", ["9"]) | {"concepts": []}, "no labels"),
    (_doc("T", ["9", "9"]), "duplicate label '9'"),
    ({"concepts": ["9"], "title": " ", "main_body": []}, "empty text"),
    (_doc("T", ["9"]) | {"concepts": 7}, "concepts"),
])
def test_eurlex57k_bad_documents_name_the_file(tmp_path, doc, message):
    _write_eurlex(tmp_path, {"train": {"bad.json": doc}, "test": {"t.json": _doc("T", ["9"])}})
    with pytest.raises(ValueError, match=message) as e:
        READERS["eurlex57k"](tmp_path)
    assert "bad.json" in str(e.value)


def test_eurlex57k_concept_absent_from_the_label_map(tmp_path):
    concepts = {k: v for k, v in CONCEPTS.items() if k != "555"}
    root = _write_eurlex(tmp_path, {"train": {"32000R0001.json": _doc("First", ["10"])},
                                    "test": {"32001R0001.json": _doc("Test doc", ["10", "555"])}}, concepts)
    with pytest.raises(ValueError, match=r"32001R0001\.json: concept '555' is not in the label map .*EURLEX57K\.json"):
        READERS["eurlex57k"](root)


def test_eurlex57k_missing_concepts_file(tmp_path):
    _write_eurlex(tmp_path, {"train": {"a.json": _doc("A", ["9"])}, "test": {"b.json": _doc("B", ["9"])}},
                  concepts=None)
    with pytest.raises(ValueError, match="EURLEX57K.json"):
        READERS["eurlex57k"](tmp_path)
    # An explicit concepts file is accepted.
    concepts = tmp_path / "concepts.json"
    concepts.write_text(json.dumps(CONCEPTS))
    assert READERS["eurlex57k"](tmp_path, concepts_file=concepts).label_texts == ["agriculture policy"]


def test_no_dataset_folder_found(tmp_path):
    with pytest.raises(ValueError, match="no folder"):
        READERS["eurlex57k"](tmp_path)


# --------------------------------------------------------------------------- attentionxml
def _write_axml(root: Path, files: dict[str, str], encoding="utf-8") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (root / name).write_bytes(content.encode(encoding if "labels" in name else "utf-8"))
    return root


AXML = {
    "train_texts.txt": "first text\nsecond\ttext with\rcarriage return\nthird\n",
    "train_labels.txt": "b_label a\na\nc a\n",
    "test_texts.txt": "a test\n",
    "test_labels.txt": "a new_label\n",
}


def test_attentionxml_reads_and_keeps_unseen_test_labels(tmp_path):
    ds = READERS["attentionxml"](_write_axml(tmp_path / "d", AXML))
    # A "\r" inside a text does not split it into two lines.
    assert ds.train_texts == ["first text", "second text with carriage return", "third"]
    assert ds.label_names == ["a", "b_label", "c", "new_label"]
    assert ds.label_texts == ["a", "b label", "c", "new label"]
    assert _rows(ds, ds.Y_train) == [["a", "b_label"], ["a"], ["a", "c"]]
    assert _rows(ds, ds.Y_test) == [["a", "new_label"]]
    assert ds.meta()["n_unseen_test_labels"] == 1


def test_attentionxml_latin1_labels(tmp_path):
    files = dict(AXML, **{"train_labels.txt": "café_crème\nÉté\nÉté café_crème\n",
                          "test_labels.txt": "Été\n"})
    root = _write_axml(tmp_path / "d", files, encoding="latin-1")
    with pytest.raises(ValueError, match=r"train_labels\.txt: cannot decode as utf-8"):
        READERS["attentionxml"](root)  # the utf-8 default cannot decode ISO-8859-1 bytes
    ds = READERS["attentionxml"](root, encoding="latin-1")
    assert ds.label_names == ["café_crème", "Été"]
    assert ds.label_texts == ["café crème", "Été"]


@pytest.mark.parametrize("change,message", [
    ({"train_labels.txt": "a\na\n"}, r"train_labels\.txt has 2 lines but .*train_texts\.txt has 3"),
    ({"train_texts.txt": "one\n \nthree\n"}, r"train_texts\.txt: line 2 is an empty text"),
    ({"test_labels.txt": "  \n"}, r"test_labels\.txt: line 1: no labels"),
    ({"train_labels.txt": "a\nb c b\nc\n"}, r"train_labels\.txt: line 2: duplicate label 'b'"),
])
def test_attentionxml_bad_input(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        READERS["attentionxml"](_write_axml(tmp_path / "d", dict(AXML, **change)))


# --------------------------------------------------------------------------- xmc-base
def _write_xmc_base(root: Path, n_labels=3, items="l0\nl1\nl2\n", encoding="utf-8", trn_texts="x0\nx1\n"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "X.trn.txt").write_text(trn_texts, encoding="utf-8")
    (root / "X.tst.txt").write_text("t0\n", encoding="utf-8")
    # Y.trn has a weight of 2 and an explicit zero: the reader makes it 0/1.
    Y_trn = sp.csr_matrix((np.array([1.0, 2.0, 0.0]), (np.array([0, 1, 1]), np.array([0, 1, 0]))),
                          shape=(2, n_labels))
    Y_tst = sp.csr_matrix((np.array([1.0]), (np.array([0]), np.array([2]))), shape=(1, n_labels))
    sp.save_npz(root / "Y.trn.npz", Y_trn)
    sp.save_npz(root / "Y.tst.npz", Y_tst)
    (root / "output-items.txt").write_bytes(items.encode(encoding))
    return root


def test_xmc_base_reads(tmp_path):
    ds = READERS["xmc-base"](_write_xmc_base(tmp_path / "eurlex-4k"))
    assert ds.train_texts == ["x0", "x1"] and ds.test_texts == ["t0"]
    assert ds.label_names == ds.label_texts == ["l0", "l1", "l2"]
    assert ds.Y_train.toarray().tolist() == [[1, 0, 0], [0, 1, 0]]
    assert ds.meta()["n_unseen_test_labels"] == 1  # l2 only in test, still a column


def test_xmc_base_latin1_label_names(tmp_path):
    root = _write_xmc_base(tmp_path / "d", items="pêche\nÉté\nà\n", encoding="latin-1")
    assert READERS["xmc-base"](root, encoding="latin-1").label_names == ["pêche", "Été", "à"]


@pytest.mark.parametrize("kwargs,message", [
    ({"trn_texts": "x0\nx1\nx2\n"}, r"Y\.trn\.npz has 2 rows but .*X\.trn\.txt has 3 texts"),
    ({"items": "l0\nl1\n"}, r"Y\.trn\.npz has 3 columns but .*output-items\.txt has 2 label names"),
])
def test_xmc_base_bad_input(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        READERS["xmc-base"](_write_xmc_base(tmp_path / "d", **kwargs))


def test_read_dataset_rejects_unknown_format_and_option(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset format 'svmlight'"):
        read_dataset("svmlight", tmp_path)
    with pytest.raises(ValueError, match="unknown option 'use_dev'"):
        read_dataset("xmc-base", tmp_path, use_dev=True)


# --------------------------------------------------------------------------- Dataset
def _tiny_dataset() -> Dataset:
    return Dataset.from_label_lists(
        ["multi\nline\ttext\r\nhere", "b"], [["x", "y"], ["y"]],
        ["c", "d"], [["z"], ["x", "y", "z"]],
    )


def test_dataset_save_load_round_trip(tmp_path):
    ds = Dataset(train_texts=["multi\nline\ttext\r\n here", "b"], test_texts=["c", "d"],
                 Y_train=sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float64)),
                 Y_test=sp.csr_matrix(np.array([[0, 0, 1], [1, 1, 1]])),
                 label_names=["x", "y", "z"], label_texts=["ex", "why", "zed"])
    folder = tmp_path / "prepared"
    ds.save(folder)
    # One text per line in the canonical form, every whitespace run collapsed.
    assert (folder / "train.txt").read_text() == "multi line text here\nb\n"
    Y = io.load_csr(folder / "Y.train.npz")
    assert Y.dtype == np.float32 and Y.format == "csr" and Y.max() == 1
    back = Dataset.load(folder)
    assert back.train_texts == [normalize_text(t) for t in ds.train_texts]
    assert back.test_texts == ds.test_texts
    assert back.label_names == ds.label_names and back.label_texts == ds.label_texts
    assert (back.Y_train != ds.Y_train).nnz == 0 and (back.Y_test != ds.Y_test).nnz == 0
    meta = io.load_json(folder / "meta.json")
    # Hand-computed: z occurs only in test; 3 + 4 positives over 4 documents.
    assert meta["n_train"] == 2 and meta["n_test"] == 2 and meta["n_labels"] == 3
    assert meta["n_labels_train"] == 2 and meta["n_unseen_test_labels"] == 1
    assert meta["avg_labels_per_doc"] == pytest.approx(7 / 4)
    assert meta["avg_labels_per_doc_train"] == pytest.approx(3 / 2)


def test_from_label_lists_orders_labels_and_collapses_text():
    ds = _tiny_dataset()
    assert ds.label_names == ["x", "y", "z"]
    assert ds.train_texts[0] == "multi line text here"
    assert _rows(ds, ds.Y_test) == [["z"], ["x", "y", "z"]]


@pytest.mark.parametrize("change,message", [
    ({"test_texts": ["c", "  "]}, "test text at line 2 is empty"),
    ({"train_texts": ["only one"]}, r"Y_train has shape \(2, 3\), expected \(1, 3\)"),
    ({"label_texts": ["x", "y"]}, "label_texts has 2 entries but label_names has 3"),
    ({"label_names": ["x", "y", "x"]}, "'x' occurs more than once"),
    ({"Y_test": sp.csr_matrix(np.array([[0, 0, 2], [1, 1, 1]]))}, "0/1"),
])
def test_dataset_validate_errors(change, message):
    ds = _tiny_dataset()
    for key, value in change.items():
        setattr(ds, key, value)
    with pytest.raises(ValueError, match=message):
        ds.validate()


def test_load_names_missing_files(tmp_path):
    _tiny_dataset().save(tmp_path / "p")
    (tmp_path / "p" / "Y.test.npz").unlink()
    with pytest.raises(ValueError, match=r"missing Y\.test\.npz"):
        Dataset.load(tmp_path / "p")


# --------------------------------------------------------------------------- embedded sample
def test_embedded_sample_checksum_matches_readme():
    archive = SAMPLE_DIR / "eurlex57k-sample.tar.gz"
    readme = (SAMPLE_DIR / "README.md").read_text()
    digests = set(re.findall(r"\b[0-9a-f]{64}\b", readme))
    assert sha256_of(archive) in digests


def test_embedded_sample_reads(tmp_path):
    archive = SAMPLE_DIR / "eurlex57k-sample.tar.gz"
    raw = fetch(archive.as_uri(), tmp_path / "raw", sha256=sha256_of(archive))
    ds = READERS["eurlex57k"](raw)
    meta = ds.meta()
    assert meta["n_train"] > 0 and meta["n_test"] > 0 and meta["n_labels"] > 0
    assert 4.0 < meta["avg_labels_per_doc_train"] < 6.0
    assert 4.0 < meta["avg_labels_per_doc_test"] < 6.0
    assert meta["n_unseen_test_labels"] > 0  # a small train split cannot cover every test label
    assert ds.Y_train.getnnz(axis=1).min() >= 1
    # Labels carry descriptor texts, not just ids, for the text-emb indexer.
    assert sum(t != n for t, n in zip(ds.label_texts, ds.label_names)) > 0.9 * ds.n_labels


def test_subsample_keeps_rows_in_order_and_drops_empty_labels():
    ds = Dataset.from_label_lists(
        ["a b", "c d", "e f", "g h"], [["x"], ["y"], ["x", "z"], ["w"]],
        ["i j", "k l"], [["x"], ["v"]])
    sub = ds.subsample(n_train=2, n_test=1, seed=3)
    assert len(sub.train_texts) == 2 and len(sub.test_texts) == 1
    # rows keep their original order and their labels
    train_idx = [ds.train_texts.index(t) for t in sub.train_texts]
    assert train_idx == sorted(train_idx)
    for i, text in enumerate(sub.train_texts):
        names = {sub.label_names[j] for j in sub.Y_train[i].indices}
        k = ds.train_texts.index(text)
        assert names == {ds.label_names[j] for j in ds.Y_train[k].indices}
    # every label left has a positive instance in one of the splits
    assert ((sub.Y_train.getnnz(axis=0) + sub.Y_test.getnnz(axis=0)) > 0).all()
    assert ds.subsample(n_train=2, n_test=1, seed=3).train_texts == sub.train_texts  # seeded
    assert ds.subsample(n_train=10).train_texts == ds.train_texts  # more than there are: all
    with pytest.raises(ValueError, match="n_test"):
        ds.subsample(n_test=0)


def test_a_byte_order_mark_is_not_part_of_the_first_text_or_label(tmp_path):
    files = dict(AXML, **{"train_labels.txt": "\ufeffb_label a\na\nc a\n", "train_texts.txt": "\ufefffirst text\nsecond\nthird\n"})
    ds = READERS["attentionxml"](_write_axml(tmp_path / "d", files))
    assert ds.label_names == ["a", "b_label", "c", "new_label"] and ds.train_texts[0] == "first text"


def test_carriage_return_only_files_are_named(tmp_path):
    files = dict(AXML, **{"train_labels.txt": "b_label a\ra\rc a\r"})
    with pytest.raises(ValueError, match=r"train_labels\.txt: its lines end in carriage returns only"):
        READERS["attentionxml"](_write_axml(tmp_path / "d", files))


def test_xmc_base_refuses_negative_entries(tmp_path):
    root = _write_xmc_base(tmp_path / "d")
    Y = sp.csr_matrix((np.array([1.0, -1.0]), (np.array([0, 1]), np.array([0, 2]))), shape=(2, 3))
    sp.save_npz(root / "Y.trn.npz", Y)
    with pytest.raises(ValueError, match=r"Y\.trn\.npz: 1 negative entries"):
        READERS["xmc-base"](root)


# --------------------------------------------------------------------------- hardening
@pytest.mark.parametrize("labels, sep", [
    ("a,b\nb,c,a\nc\n", ","),      # every document one "label", some holding commas
    ("a;b\nb;c\nc;a\n", ";"),
    ("a, b\na\nc\n", ","),         # "a," and "a" differ only by the separator
    ("a|b\nc|a\nb\n", "|"),
])
def test_label_lists_of_another_separator_stop_prepare(tmp_path, labels, sep):
    files = dict(AXML, **{"train_labels.txt": labels})
    with pytest.raises(ValueError, match=rf"train_labels\.txt: line \d+: .*label_separator: '\{sep}'"):
        READERS["attentionxml"](_write_axml(tmp_path / "d", files))


def test_label_separator_option_reads_lists(tmp_path):
    files = dict(AXML, **{"train_labels.txt": "b_label, a\na\nc,a,\n", "test_labels.txt": "a;new_label\n"})
    root = _write_axml(tmp_path / "d", files)
    with pytest.raises(ValueError, match="label_separator"):
        READERS["attentionxml"](root)
    ds = read_dataset("attentionxml", root, label_separator=",")
    assert _rows(ds, ds.Y_train) == [["a", "b_label"], ["a"], ["a", "c"]]
    assert ds.label_names == ["a", "a;new_label", "b_label", "c"]  # ";" is no separator here
    with pytest.raises(ValueError, match="label_separator must be a non-blank string"):
        read_dataset("attentionxml", root, label_separator=" ")
    # single-label datasets with plain names are fine
    plain = dict(AXML, **{"train_labels.txt": "a\nb\nc\n", "test_labels.txt": "b\n"})
    assert READERS["attentionxml"](_write_axml(tmp_path / "plain", plain)).label_names == ["a", "b", "c"]


@pytest.mark.parametrize("fmt", ["attentionxml", "xmc-base", "eurlex57k"])
def test_control_characters_in_texts_are_refused_with_file_and_line(tmp_path, fmt):
    if fmt == "attentionxml":
        root = _write_axml(tmp_path / "d", dict(AXML, **{"train_texts.txt": "first\nsec\x00\x00ond\nthird\n"}))
        where = r"train_texts\.txt: line 2"
    elif fmt == "xmc-base":
        root = _write_xmc_base(tmp_path / "d", trn_texts="x0\nx\x011\n")
        where = r"X\.trn\.txt: line 2"
    else:
        root = _write_eurlex(tmp_path / "d", {"train": {"a.json": _doc("Title\x00", ["10"])},
                                              "test": {"b.json": _doc("Other", ["9"])}})
        where = r"a\.json"
    with pytest.raises(ValueError, match=rf"{where}: control character '\\x0[01]'.*control_characters: replace"):
        read_dataset(fmt, root)
    ds = read_dataset(fmt, root, control_characters="replace")
    assert not any(c in t for t in ds.train_texts for c in "\x00\x01")


def test_c1_controls_become_spaces_and_are_counted(tmp_path, caplog):
    root = _write_axml(tmp_path / "d", dict(AXML, **{"train_texts.txt": "first\x97text\nsecond\nthird\n"}))
    with caplog.at_level("INFO", logger="xmc.data.readers"):
        ds = READERS["attentionxml"](root)
    assert ds.train_texts[0] == "first text"
    assert "replaced 1 control characters" in caplog.text


def test_one_blank_line_at_the_end_is_accepted_in_both_files(tmp_path, caplog):
    files = dict(AXML, **{"train_texts.txt": AXML["train_texts.txt"] + "\n",
                          "train_labels.txt": AXML["train_labels.txt"] + "\r\n"})
    with caplog.at_level("INFO", logger="xmc.data.readers"):
        ds = READERS["attentionxml"](_write_axml(tmp_path / "d", files))
    assert len(ds.train_texts) == 3 and caplog.text.count("dropped the blank line at its end") == 2
    two = dict(AXML, **{"train_texts.txt": AXML["train_texts.txt"] + "\n\n"})
    with pytest.raises(ValueError, match=r"train_texts\.txt: line 4 is an empty text"):
        READERS["attentionxml"](_write_axml(tmp_path / "two", two))


def test_eurlex57k_json_with_a_byte_order_mark_reads(tmp_path):
    root = _write_eurlex(tmp_path / "d", {"train": {"a.json": _doc("Title", ["10"])}, "test": {"b.json": _doc("Other", ["9"])}})
    path = next(root.rglob("a.json"))
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_dataset("eurlex57k", root).train_texts[0].startswith("Title")


def test_unknown_encoding_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown encoding 'no-such-codec'"):
        read_dataset("attentionxml", _write_axml(tmp_path / "d", AXML), text_encoding="no-such-codec")


# --------------------------------------------------------------------------- any language's text
def test_nfc_and_nfd_spellings_are_one_label_and_one_text(tmp_path):
    """``café`` as one code point (NFC) or as ``e`` + combining acute (NFD) prints the same: it is
    one label, and the texts are stored in NFC."""
    import unicodedata

    nfc, nfd = "café", unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    files = dict(AXML, **{"train_labels.txt": f"{nfc}\n{nfd}\n{nfc} a\n", "test_labels.txt": f"{nfd}\n",
                          "train_texts.txt": f"un {nfd}\ndeux\ntrois\n"})
    ds = READERS["attentionxml"](_write_axml(tmp_path / "d", files))
    assert ds.label_names == ["a", nfc]
    assert _rows(ds, ds.Y_train) == [[nfc], [nfc], ["a", nfc]] and _rows(ds, ds.Y_test) == [[nfc]]
    assert ds.train_texts[0] == f"un {nfc}"


@pytest.mark.parametrize("line", ["\u200b", "\u200b\u200c \u200d", "\ufeff", "\u2060\ufeff"])
def test_invisible_only_lines_are_refused_by_file_and_line(tmp_path, line):
    files = dict(AXML, **{"train_texts.txt": f"one\n{line}\nthree\n"})
    with pytest.raises(ValueError, match=r"train_texts\.txt: line 2 (holds only invisible characters|is an empty text)"):
        READERS["attentionxml"](_write_axml(tmp_path / "d", files))


def test_a_stray_byte_order_mark_inside_a_text_is_dropped(tmp_path):
    files = dict(AXML, **{"train_texts.txt": "one\n\ufefftwo\nthree\n"})
    assert READERS["attentionxml"](_write_axml(tmp_path / "d", files)).train_texts[1] == "two"


@pytest.mark.parametrize("labels,message", [
    ("a\nb\x00c\nc\n", r"train_labels\.txt: line 2: label 'b\\x00c' holds the control character '\\x00'"),
    ("a\n\u200b\nc\n", r"train_labels\.txt: line 2: a label made only of invisible characters"),
])
def test_nul_or_invisible_label_names_are_refused(tmp_path, labels, message):
    with pytest.raises(ValueError, match=message):
        READERS["attentionxml"](_write_axml(tmp_path / "d", dict(AXML, **{"train_labels.txt": labels})))


def test_a_lone_surrogate_in_a_eurlex_document_names_the_file(tmp_path):
    _write_eurlex(tmp_path / "d", {"train": {"a.json": _doc("Title", ["10"])},
                                   "test": {"b.json": _doc("Other", ["9"])}})
    bad = next((tmp_path / "d").rglob("a.json"))
    bad.write_text(bad.read_text().replace("Title", "Ti\\ud800tle"))
    with pytest.raises(ValueError, match=r"a\.json: invalid Unicode '\\ud800' \(a lone surrogate"):
        read_dataset("eurlex57k", tmp_path / "d")
