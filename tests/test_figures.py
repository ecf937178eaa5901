"""Figure functions: the numbers they plot (hand-computed) and non-empty PNG/PDF files."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from xmc.figures import (GROUPS, cluster_size_figure, cluster_sizes, label_frequencies, label_frequency_figure,
                         precision_at_k_figure, precision_at_k_rows, save_figure)

# 4 instances, 5 labels; label 4 appears in no training instance (test-only)
Y = sp.csr_matrix(np.array([[1, 1, 0, 0, 0],
                            [1, 0, 1, 0, 0],
                            [1, 0, 0, 1, 0],
                            [0, 1, 0, 0, 0]], dtype=np.float32))
# clusters: {0, 1} -> 0, {2, 3, 4} -> 1
C = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]], dtype=np.float32))


def test_label_frequencies_hand_computed():
    assert label_frequencies(Y).tolist() == [3, 2, 1, 1, 0]
    with pytest.raises(ValueError, match="Y: expected a sparse"):
        label_frequencies(np.ones((2, 2)))


def test_cluster_sizes_hand_computed():
    labels, instances = cluster_sizes(C, Y)
    assert labels.tolist() == [2, 3]
    # cluster 0 (labels 0, 1): instances 0, 1, 2, 3; cluster 1 (labels 2, 3, 4): instances 1, 2
    assert instances.tolist() == [4, 2]
    assert cluster_sizes(C)[1] is None
    with pytest.raises(ValueError, match="Y has 4 labels but C has 5 rows"):
        cluster_sizes(C, Y[:, :4])


def _written(tmp_path, fig, name):
    png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
    save_figure(fig, png=png, pdf=pdf)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp*"))


def test_figures_write_png_and_pdf(tmp_path):
    _written(tmp_path, label_frequency_figure(label_frequencies(Y), "tiny"), "freq")
    sizes = {"pifa-tfidf": cluster_sizes(C, Y), "text-emb": cluster_sizes(C[::-1], Y)}
    fig = cluster_size_figure(sizes, "tiny")
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    _written(tmp_path, fig, "clusters")
    metrics = pd.DataFrame({"model": ["a", "b", "ens"], "P@1": [80.0, 70.0, 85.0], "P@3": [60.0, 50.0, 65.0],
                            "P@5": [50.0, 40.0, 55.0]})
    _written(tmp_path, precision_at_k_figure(metrics, labels={"ens": "[9] ens"}), "pk")


# test and validation figures of five models; file-name order is not P@1 order
PK = pd.DataFrame({
    "model": ["lin", "xt-a", "xt-b", "ens", "peer"] * 2,
    "split": ["test"] * 5 + ["valid"] * 5,
    "ensemble": ["", "", "", "average", ""] * 2,
    "P@1": [91.0, 92.1, 93.4, 93.9, 90.5] + [50.0] * 5,
    "P@3": [78.0, 79.0, 80.2, 80.0, 77.0] + [40.0] * 5,
    "P@5": [66.0, 67.0, 68.0, 68.5, 65.0] + [30.0] * 5,
})
PK_GROUPS = {"lin": GROUPS[1], "xt-a": GROUPS[0], "xt-b": GROUPS[0], "ens": GROUPS[2], "peer": GROUPS[4]}


def test_precision_at_k_rows_test_split_grouped_by_p1():
    rows = precision_at_k_rows(PK, PK_GROUPS)
    assert list(rows["model"]) == ["xt-b", "xt-a", "lin", "ens", "peer"]  # groups in order, P@1 within
    assert (rows["split"] == "test").all() and rows["P@1"].min() == 90.5
    # without groups: an ensemble is recognised by its column, the rest is "other" (last)
    assert list(precision_at_k_rows(PK)["group"]) == ["ensembles"] + ["other"] * 4
    with pytest.raises(ValueError, match="no 'test' split"):
        precision_at_k_rows(PK[PK.split == "valid"])


def test_precision_at_k_is_a_dot_plot_that_shows_small_differences(tmp_path):
    marks = {"xt-a": "minilm = BERT, XLNet", "xt-b": "minilm = BERT, XLNet", "lin": "phi_pre: minilm"}
    fig = precision_at_k_figure(PK, labels={"xt-a": "[2,4] xt-a"}, groups=PK_GROUPS, marks=marks,
                                title="d: P@k, test split")
    assert [ax.get_title() for ax in fig.axes] == ["P@1", "P@3", "P@5"]
    assert "test split" in fig._suptitle.get_text()
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert names == ["X-Transformer models (2)", "xt-b  \u2014 minilm = BERT, XLNet",
                     "[2,4] xt-a  \u2014 minilm = BERT, XLNet", "linear baselines (1)", "lin  \u2014 phi_pre: minilm",
                     "ensembles (1)", "ens", "peers (1)", "peer"]
    p1 = fig.axes[0]
    dots = p1.collections[0].get_offsets()
    # the test figures at the models' rows (validation's 50.0 is not drawn)
    assert sorted(dots[:, 0].tolist()) == [90.5, 91.0, 92.1, 93.4, 93.9]
    assert dict(zip(dots[:, 1].tolist(), dots[:, 0].tolist())) == {1: 93.4, 2: 92.1, 4: 91.0, 6: 93.9, 8: 90.5}
    lo, hi = p1.get_xlim()
    assert 88.0 < lo < 90.5 and 93.9 < hi < 97.0  # not 0-100: 1-2 points are visible
    assert not p1.patches  # dots, no bars
    _written(tmp_path, fig, "pk-dots")


def test_figure_input_errors():
    with pytest.raises(ValueError, match="lacks columns"):
        precision_at_k_figure(pd.DataFrame({"model": ["a"], "P@1": [1.0]}))
    with pytest.raises(ValueError, match="no indexers"):
        cluster_size_figure({})
