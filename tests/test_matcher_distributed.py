"""Data-parallel matcher training (torchrun, gloo on CPU) and the memory/precision options."""
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import shutil  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from xmc.io import save_csr  # noqa: E402
from xmc.matcher.launch import arguments, torchrun_command, train_from_files  # noqa: E402
from xmc.matcher.transformer import MatcherParams, TransformerMatcher, _local_chunks  # noqa: E402

N, L, K, T = 18, 6, 3, 12


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("ddp")
    encoder = Path(shutil.copytree(tiny_encoder("bert"), root / "bert"))  # changed below
    # No dropout anywhere: the ranks draw other masks than the single process does.
    config = json.loads((encoder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (encoder / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 60, size=(N, T)).astype(np.int32)
    ids[:, 0] = 2  # [CLS]
    mask = np.ones((N, T), dtype=np.int32)
    mask[::3, T // 2:] = 0  # some padding
    ids[mask == 0] = 0
    np.savez(root / "tokens.npz", input_ids=ids, attention_mask=mask)
    Y = sp.csr_matrix((rng.random((N, L)) < 0.3).astype(np.float32))
    C = sp.csr_matrix((np.ones(L, dtype=np.float32), (np.arange(L), np.arange(L) % K)), shape=(L, K))
    save_csr(root / "Y.npz", Y)
    save_csr(root / "C.npz", C)
    return root, encoder


# Batch 4 x accumulation 3 of
# 18 rows: epochs end on short micro-batches and steps straddle epochs.
PARAMS = dict(max_steps=6, warmup_steps=1, learning_rate=1e-3, head_learning_rate=1e-2, batch_size=4,
              grad_accum=3, dropout=0.0, device="cpu", seed=0, log_every=1, checkpoint_every=0)


@pytest.mark.slow
def test_two_gloo_processes_follow_the_single_process_loss(files, tmp_path):
    root, encoder = files
    args = arguments(encoder, root / "tokens.npz", root / "Y.npz", root / "C.npz", PARAMS,
                     tmp_path / "model")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd(), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(torchrun_command(2, args), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data-parallel over 2 processes" in done.stderr
    ddp = json.loads((tmp_path / "model" / "matcher.json").read_text())["history"]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train_from_files(encoder, root / "tokens.npz", root / "Y.npz", root / "C.npz", PARAMS)
    finally:
        torch.set_num_threads(threads)
    assert [h["step"] for h in ddp] == [h["step"] for h in single.history_] == list(range(1, 7))
    np.testing.assert_allclose([h["loss"] for h in ddp], [h["loss"] for h in single.history_], rtol=1e-4)
    assert ddp[-1]["loss"] < ddp[0]["loss"]  # it learned something: the comparison is not vacuous
    saved = TransformerMatcher.load(tmp_path / "model", device="cpu")
    np.testing.assert_allclose(saved.head.weight.detach().numpy(), single.head.weight.detach().numpy(),
                               atol=1e-4)


def test_rank_shares_cover_the_step_and_weigh_like_the_batch_means():
    micro = [torch.arange(0, 4), torch.arange(4, 8), torch.arange(8, 10)]  # a short last batch
    for world in (2, 3, 4):
        shares = [_local_chunks(micro, r, world, batch_size=4, grad_accum=3) for r in range(world)]
        rows = sorted(int(i) for s in shares for idx, _ in s for i in idx)
        assert rows == list(range(10))
        weight = {int(i): float(w) / world for s in shares for idx, ws in s for i, w in zip(idx, ws)}
        assert weight[0] == pytest.approx(1 / (4 * 3)) and weight[9] == pytest.approx(1 / (2 * 3))
        assert all(len(idx) <= 4 for s in shares for idx, _ in s)
    # more ranks than rows: the rank without rows runs one row with weight 0
    lonely = _local_chunks([torch.arange(0, 2)], 2, 3, batch_size=4, grad_accum=1)
    assert len(lonely) == 1 and float(lonely[0][1].sum()) == 0.0
    assert _local_chunks(micro, 0, 1, 4, 3) == [(m, None) for m in micro]


def test_gradient_checkpointing_keeps_the_loss_and_fp16_trains(files):
    root, encoder = files
    base = train_from_files(encoder, root / "tokens.npz", root / "Y.npz", root / "C.npz",
                            {**PARAMS, "max_steps": 3})
    ckpt = train_from_files(encoder, root / "tokens.npz", root / "Y.npz", root / "C.npz",
                            {**PARAMS, "max_steps": 3, "gradient_checkpointing": True})
    np.testing.assert_allclose([h["loss"] for h in ckpt.history_], [h["loss"] for h in base.history_],
                               rtol=1e-5)
    half = train_from_files(encoder, root / "tokens.npz", root / "Y.npz", root / "C.npz",
                            {**PARAMS, "max_steps": 3, "precision": "fp16"})
    assert all(np.isfinite(h["loss"]) for h in half.history_)
    np.testing.assert_allclose(half.history_[0]["loss"], base.history_[0]["loss"], rtol=2e-2)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="gradient_checkpointing must be true or false"):
        MatcherParams(gradient_checkpointing="yes")
    with pytest.raises(ValueError, match="precision must be one of"):
        MatcherParams(precision="fp8")
    with pytest.raises(ValueError, match="nproc"):
        torchrun_command(0, [])
