"""Small builders shared by the tests."""
import scipy.sparse as sp


def csr_from_dicts(rows, n_labels=5) -> sp.csr_matrix:
    """One {label: score} dict per row -> CSR (len(rows), n_labels); written-out scores stay stored."""
    m = sp.lil_matrix((len(rows), n_labels))
    for i, row in enumerate(rows):
        for label, score in row.items():
            m[i, label] = score
    return m.tocsr()
