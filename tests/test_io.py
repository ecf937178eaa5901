"""xmc.io.atomic_path: all or nothing, and no temporaries left behind by a killed writer."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.io import atomic_path, load_csr, save_csr


def test_a_failed_block_leaves_neither_output_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "X.train.npz") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_the_temporaries_of_a_killed_writer_go_when_the_output_is_written_again(tmp_path):
    # a real kill -9 in the middle of writing X.train.npz (as a killed tfidf job)
    script = ("import sys, time; from xmc.io import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n"
              "    tmp.write_bytes(b'partial'); print(tmp, flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "X.train.npz")], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    left = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert os.path.basename(left).startswith(".X.train.") and os.path.exists(left)
    with atomic_path(tmp_path / "model", is_dir=True) as d:  # a directory output and its own stale copy
        (d / "f").write_text("x")
    (tmp_path / ".model.abcd1234.tmp").mkdir()
    other = tmp_path / ".X.test.abcd1234.tmp.test.npz"  # another output's temporary: kept
    other.write_bytes(b"")

    save_csr(tmp_path / "X.train.npz", sp.identity(3, format="csr"))
    with atomic_path(tmp_path / "model", is_dir=True) as d:
        (d / "f").write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".X.test.abcd1234.tmp.test.npz", "X.train.npz", "model"]
    np.testing.assert_array_equal(load_csr(tmp_path / "X.train.npz").toarray(), np.eye(3))
    assert (tmp_path / "model" / "f").read_text() == "y"


def test_load_ranker_features_joins_the_named_blocks(tmp_path):
    """The workflow's ranker and linear matcher jobs read their input through this: which blocks
    are joined follows the files named (X: TF-IDF, Xc: character n-grams, emb: embeddings)."""
    import numpy as np
    import scipy.sparse as sp

    from xmc.features import load_ranker_features
    from xmc.io import save_csr, save_npy

    X = sp.csr_matrix(np.array([[3.0, 4.0], [0.0, 1.0]], dtype=np.float32))
    Xc = sp.csr_matrix(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]], dtype=np.float32))
    emb = np.array([[0.0, 5.0], [1.0, 0.0]], dtype=np.float32)
    files = {"X_test": tmp_path / "X.npz", "Xc_test": tmp_path / "Xc.npz", "emb_test": tmp_path / "e.npy"}
    save_csr(files["X_test"], X), save_csr(files["Xc_test"], Xc), save_npy(files["emb_test"], emb)
    assert (load_ranker_features({"X_test": files["X_test"]}, "test") != X).nnz == 0
    both = load_ranker_features({k: files[k] for k in ("X_test", "Xc_test")}, "test")
    np.testing.assert_allclose(both.toarray(), [[0.6, 0.8, 1, 0, 0], [0, 1, 0, 0, 1]], rtol=1e-6)
    all3 = load_ranker_features(files, "test")
    assert all3.shape == (2, 7) and np.allclose(all3.toarray()[:, 5:], [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="got none"):
        load_ranker_features(files, "train")


def test_two_writers_of_one_output_never_delete_each_others_temporary(tmp_path):
    """Two processes writing the same output at once (two `xmc predict -o same.jsonl`): each has its
    own temporary (host + pid + random), neither removes the other's, and both finish."""
    out = tmp_path / "tags.jsonl"
    script = ("import sys; from xmc.io import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n"
              "    tmp.write_text('first'); print(tmp, flush=True); sys.stdin.readline()\n")
    first = subprocess.Popen([sys.executable, "-c", script, str(out)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        first_tmp = first.stdout.readline().strip()
        assert f"-{first.pid}-" in os.path.basename(first_tmp)
        with atomic_path(out) as tmp:  # the second writer, while the first is still writing
            assert f"-{os.getpid()}-" in tmp.name and str(tmp) != first_tmp
            assert os.path.exists(first_tmp)  # not taken for a killed run's leftover
            tmp.write_text("second")
        assert out.read_text() == "second" and os.path.exists(first_tmp)
        first.stdin.write("\n")
        first.stdin.flush()
        assert first.wait(timeout=60) == 0  # the first finishes too: its file was still there
    finally:
        first.kill()
    assert out.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tags.jsonl"]
