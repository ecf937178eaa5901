"""Figure functions: the numbers they plot (hand-computed) and non-empty PNG/PDF files."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from xmc.figures import (cluster_size_figure, cluster_sizes, label_frequencies, label_frequency_figure,
                         precision_at_k_figure, save_figure)

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
    fig = precision_at_k_figure(metrics, labels={"ens": "[9] ens"})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "[9] ens"]
    assert sorted(p.get_width() for p in ax.patches)[-1] == 85.0 and len(ax.patches) == 9
    _written(tmp_path, fig, "pk")


def test_figure_input_errors():
    with pytest.raises(ValueError, match="lacks columns"):
        precision_at_k_figure(pd.DataFrame({"model": ["a"], "P@1": [1.0]}))
    with pytest.raises(ValueError, match="no indexers"):
        cluster_size_figure({})
