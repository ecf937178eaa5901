"""Small builders shared by the tests."""
import numpy as np
import scipy.sparse as sp


def csr_from_dicts(rows, n_labels=5) -> sp.csr_matrix:
    """One {label: score} dict per row -> CSR (len(rows), n_labels); written-out scores stay stored."""
    m = sp.lil_matrix((len(rows), n_labels))
    for i, row in enumerate(rows):
        for label, score in row.items():
            m[i, label] = score
    return m.tocsr()


KEYWORDS = ["sports", "politics", "science", "finance"]
FILLER = ["the", "quick", "brown", "fox", "red", "blue", "one", "two", "apple", "lemon"]


def toy_task(n=32, seed=0):
    """n docs whose cluster (K = 4) is given by one keyword hidden among random filler words."""
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for i in range(n):
        k = i % len(KEYWORDS)
        words = list(rng.choice(FILLER, 6))
        words.insert(int(rng.integers(0, 7)), KEYWORDS[k])
        texts.append(" ".join(words))
        y.append(k)
    M = sp.csr_matrix((np.ones(n, dtype=np.float32), (np.arange(n), y)), shape=(n, len(KEYWORDS)))
    return texts, M
