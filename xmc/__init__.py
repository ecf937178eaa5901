"""xmc: the library behind the X-Transformer workflow (Chang et al., KDD 2020).

Stages, one module each: ``xmc.data`` (download, readers, canonical form), ``xmc.features``
(TF-IDF, tokenization), ``xmc.label_repr`` (PIFA, text embeddings), ``xmc.indexing``
(balanced spherical k-means), ``xmc.matcher`` (transformer and linear matchers),
``xmc.ranker`` (one-vs-all rankers, TFN/MAN negatives), ``xmc.ensemble``, ``xmc.metrics``.
"""

__version__ = "0.1.0"


def load(path, device: str = "auto"):
    """Load an exported model bundle (see :mod:`xmc.bundle`): ``xmc.load(path).predict(texts)``."""
    from xmc.bundle import load as _load

    return _load(path, device=device)
