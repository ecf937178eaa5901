"""Inference in resumable chunks: a job killed part-way keeps the chunks it finished, and the rerun
computes only the rest, to the same result as one pass."""
import numpy as np
import pytest
import scipy.sparse as sp

from xmc.matcher.transformer import MatcherPredParams
from xmc.resumable import file_stamp, in_chunks, matcher_predictions


def _compute(calls):
    def compute(lo, hi):
        calls.append((lo, hi))
        rows = np.arange(lo, hi)
        return {"topb": sp.csr_matrix((rows + 1.0, rows % 3, np.arange(hi - lo + 1)), shape=(hi - lo, 3)),
                "emb": np.outer(rows, [1.0, 2.0]).astype(np.float32)}
    return compute


def test_a_killed_run_resumes_from_its_finished_chunks(tmp_path):
    folder, key = tmp_path / ".predict-train.chunks", {"model": "m1"}
    calls = []
    compute = _compute(calls)

    def dies_at_the_third_chunk(lo, hi):
        if lo >= 8:
            raise KeyboardInterrupt("time limit")
        return compute(lo, hi)

    with pytest.raises(KeyboardInterrupt):
        in_chunks(10, 4, folder, key, dies_at_the_third_chunk)
    assert calls == [(0, 4), (4, 8)] and len(list(folder.glob("rows-*.npz"))) == 2
    calls.clear()
    said = []
    out = in_chunks(10, 4, folder, key, compute, log=said.append)
    assert calls == [(8, 10)] and "resumed: 2 of 3 chunks" in said[0]
    whole = _compute([])(0, 10)
    np.testing.assert_array_equal(out["emb"], whole["emb"])
    assert (out["topb"] != whole["topb"]).nnz == 0 and not folder.exists()  # gone once joined
    # chunks of another model are not reused
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        in_chunks(10, 4, folder, key, dies_at_the_third_chunk)
    calls.clear()
    in_chunks(10, 4, folder, {"model": "m2"}, compute)
    assert calls == [(0, 4), (4, 8), (8, 10)]


def test_matcher_predictions_in_whole_batches(tmp_path):
    class Matcher:  # records the rows each predict call sees
        seen = []

        def predict(self, ids, mask, pred_params):
            self.seen.append(len(ids))
            return sp.csr_matrix(ids[:, :pred_params.top_b].astype(np.float32)), ids.astype(np.float32)

    ids = np.arange(70).reshape(35, 2)
    topb, emb = matcher_predictions(Matcher(), ids, np.ones_like(ids), tmp_path / "c", {},
                                    MatcherPredParams(top_b=1, batch_size=8), chunk_rows=20)
    assert Matcher.seen == [16, 16, 3]  # 20 rows rounded down to two batches of 8
    np.testing.assert_array_equal(emb, ids)
    np.testing.assert_array_equal(topb.toarray()[:, 0], ids[:, 0])
    (tmp_path / "f").write_bytes(b"x")
    assert file_stamp(tmp_path / "f")[0][:2] == ("f", 1)
