"""The one training loop (xmc.training) as each of its three users trains through it: the matcher,
XR-Transformer and APLC all resume from a checkpoint to the uninterrupted result, train
data-parallel (torchrun, gloo) along the single-process loss, train under fp16 and stop on a
non-finite loss with the step."""
import json
import os
import re

os.environ["HF_HUB_OFFLINE"] = "1"

import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from xmc.aplc import APLC, APLCParams  # noqa: E402
from xmc.io import save_csr  # noqa: E402
from xmc.matcher.launch import arguments, torchrun_command, train_from_files  # noqa: E402
from xmc.matcher.transformer import MatcherParams, TransformerMatcher  # noqa: E402
from xmc.training import (CHECKPOINT_FILE, Checkpoints, EpochBatches, LoopSettings,  # noqa: E402
                          rank_chunks)

N, L, K, T = 18, 8, 4, 12
SYSTEMS = ["matcher", "xr", "aplc"]
# Batch 4 x accumulation 2 of 18 rows: epochs end on short micro-batches and steps straddle epochs.
COMMON = dict(max_steps=8, batch_size=4, grad_accum=2, device="cpu", seed=0, log_every=1, checkpoint_every=0)
PARAMS = {
    "matcher": dict(COMMON, warmup_steps=1, learning_rate=1e-3, head_learning_rate=1e-2, dropout=0.0),
    "xr": dict(COMMON, warmup_steps=1, learning_rate=1e-3, head_learning_rate=1e-2, dropout=0.0),
    "aplc": dict(COMMON, hidden_size=16, proportions=[0.5, 0.5], encoder_learning_rate=1e-3,
                 hidden_learning_rate=3e-3, aplc_learning_rate=1e-2, dropout=0.0),
}
XR = {"levels": [2, 4], "top_k": 1}  # two levels of 4 steps each


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the same kernels in every run


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("training")
    encoder = Path(shutil.copytree(tiny_encoder("bert"), root / "bert"))  # changed below
    # No dropout in the encoder: data-parallel ranks draw other masks than the single process does.
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
    Y = (rng.random((N, L)) < 0.3).astype(np.float32)
    Y[np.arange(N), np.arange(N) % L] = 1.0  # every row has a label
    C = sp.csr_matrix((np.ones(L, dtype=np.float32), (np.arange(L), np.arange(L) % K)), shape=(L, K))
    save_csr(root / "Y.npz", sp.csr_matrix(Y))
    save_csr(root / "C.npz", C)
    return root, encoder


def train(files, system, log=None, checkpoint_dir=None, encoder=None, **overrides):
    root, default_encoder = files
    return train_from_files(encoder or default_encoder, root / "tokens.npz", root / "Y.npz",
                            None if system == "aplc" else root / "C.npz", {**PARAMS[system], **overrides},
                            checkpoint_dir, log=log, system=system, xr=XR if system == "xr" else None)


def weights(model) -> dict:
    """Every trained tensor: the network's, and XR's frozen coarser heads."""
    net = model.net_ if isinstance(model, APLC) else model.net
    out = dict(net.state_dict())
    for i, (_, head) in enumerate(getattr(model, "tree_", None) or ()):
        out.update({f"tree{i}.{k}": v for k, v in head.state_dict().items()})
    return out


class Interrupted(Exception):
    pass


def interrupt_at(step):
    """A log that stops training once step ``step`` is logged, as a kill would."""
    def log(message):
        found = re.search(r"(?<!from )step (\d+)/", message)
        if found and int(found.group(1)) >= step:
            raise Interrupted(message)
    return log


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("stop", [3, 5])  # XR: in its first level, in its second
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(files, tmp_path, system, stop):
    ckpt = tmp_path / "checkpoint"
    # dropout on: the RNG restore must matter
    with pytest.raises(Interrupted):
        train(files, system, log=interrupt_at(stop), checkpoint_dir=ckpt, checkpoint_every=2, dropout=0.1)
    state = torch.load(ckpt / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    # the last checkpoint before the stop (XR: 4 steps per level, the level in "phase")
    assert 4 * state["phase"] + state["step"] == 2 * (stop // 2)

    logged = []
    resumed = train(files, system, log=logged.append, checkpoint_dir=ckpt, checkpoint_every=2, dropout=0.1)
    fresh = train(files, system, dropout=0.1)
    assert any("resuming from" in m for m in logged)
    assert [h["step"] for h in resumed.history_] == list(range(1, 9))
    assert resumed.history_ == fresh.history_
    a, b = weights(resumed), weights(fresh)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    other = weights(train(files, system, dropout=0.1, seed=1))
    assert any(not torch.equal(a[k], other[k]) for k in a)  # the comparison is not vacuous


@pytest.mark.parametrize("system", ["xr", "aplc"])
def test_a_checkpoint_of_other_settings_is_ignored(files, tmp_path, system):
    ckpt = tmp_path / "checkpoint"
    train(files, system, checkpoint_dir=ckpt, checkpoint_every=2, max_steps=4)
    assert (ckpt / CHECKPOINT_FILE).is_file()
    logged = []
    train(files, system, log=logged.append, checkpoint_dir=ckpt, checkpoint_every=2, max_steps=4, batch_size=3)
    assert any("ignoring" in m and "batch_size" in m for m in logged) and not any("resuming" in m for m in logged)


@pytest.mark.slow
@pytest.mark.parametrize("system", SYSTEMS)
def test_two_gloo_processes_follow_the_single_process_loss(files, tmp_path, system):
    root, encoder = files
    args = arguments(encoder, root / "tokens.npz", root / "Y.npz", None if system == "aplc" else root / "C.npz",
                     PARAMS[system], tmp_path / "model", system=system, xr=XR if system == "xr" else None)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd(), "CUDA_VISIBLE_DEVICES": ""}
    cmd = torchrun_command(2, args, log_dir=tmp_path / "torchrun")  # not a torchelastic_* folder in /tmp
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data-parallel over 2 processes" in done.stderr
    meta = "aplc.json" if system == "aplc" else "matcher.json"
    ddp = json.loads((tmp_path / "model" / meta).read_text())["history"]
    single = train(files, system)
    assert [h["step"] for h in ddp] == [h["step"] for h in single.history_] == list(range(1, 9))
    np.testing.assert_allclose([h["loss"] for h in ddp], [h["loss"] for h in single.history_], rtol=1e-4)
    saved = (APLC if system == "aplc" else TransformerMatcher).load(tmp_path / "model", device="cpu")
    a, b, start = weights(saved), weights(single), weights(train(files, system, max_steps=2))
    heads = [name for name in b if not name.startswith("encoder.")]  # the encoder: save_pretrained's
    for name in heads:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), atol=1e-4, err_msg=name)
    # training moved the heads far more than that tolerance: the comparison is not vacuous
    assert max(float((b[name] - start[name]).abs().max()) for name in heads) > 1e-2


@pytest.mark.parametrize("system", SYSTEMS)
def test_fp16_trains_near_the_fp32_loss(files, system):
    base = train(files, system, max_steps=2)
    half = train(files, system, max_steps=2, precision="fp16")
    assert all(np.isfinite(h["loss"]) for h in half.history_)
    np.testing.assert_allclose(half.history_[0]["loss"], base.history_[0]["loss"], rtol=2e-2)


@pytest.mark.parametrize("system", ["matcher", "xr"])
def test_gradient_checkpointing_keeps_the_loss(files, system):
    base = train(files, system, max_steps=2)
    recomputed = train(files, system, max_steps=2, gradient_checkpointing=True)
    np.testing.assert_allclose([h["loss"] for h in recomputed.history_], [h["loss"] for h in base.history_],
                               rtol=1e-5)
    assert not recomputed.encoder.is_gradient_checkpointing  # switched off for prediction


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="gradient_checkpointing must be true or false"):
        MatcherParams(gradient_checkpointing="yes")
    for params in (MatcherParams, APLCParams):
        with pytest.raises(ValueError, match="precision must be one of"):
            params(precision="fp8")
    with pytest.raises(ValueError, match="nproc"):
        torchrun_command(0, [])
    with pytest.raises(ValueError, match="system must be one of"):
        train_from_files("enc", "tokens.npz", "Y.npz", None, {}, system="bonsai")


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_non_finite_loss_stops_training_with_the_step(files, tmp_path, system):
    from transformers import AutoModel, AutoTokenizer

    _, encoder = files
    broken = tmp_path / "broken"
    model = AutoModel.from_pretrained(encoder)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.fill_(float("nan"))
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(broken)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 1/"):
        train(files, system, encoder=broken)


def test_out_of_memory_names_the_batch_settings():
    s = LoopSettings(name="aplc", steps=10, batch_size=8, grad_accum=2)
    message = s.out_of_memory(3, torch.device("cuda"))
    for part in ("aplc ran out of cuda memory at step 3/10", "batch_size to 4", "grad_accum to 4",
                 "total batch of 16", "precision bf16"):
        assert part in message, part
    with pytest.raises(ValueError, match="precision"):
        LoopSettings(name="x", steps=1, batch_size=1, precision="fp8")


def test_rank_shares_cover_the_step_and_weigh_like_the_batch_means():
    micro = [torch.arange(0, 4), torch.arange(4, 8), torch.arange(8, 10)]  # a short last batch
    for world in (2, 3, 4):
        shares = [rank_chunks(micro, r, world, batch_size=4, grad_accum=3) for r in range(world)]
        rows = sorted(int(i) for s in shares for idx, _ in s for i in idx)
        assert rows == list(range(10))
        weight = {int(i): float(w) / world for s in shares for idx, ws in s for i, w in zip(idx, ws)}
        assert weight[0] == pytest.approx(1 / (4 * 3)) and weight[9] == pytest.approx(1 / (2 * 3))
        assert all(len(idx) <= 4 for s in shares for idx, _ in s)
    # more ranks than rows: the rank without rows runs one row with weight 0
    lonely = rank_chunks([torch.arange(0, 2)], 2, 3, batch_size=4, grad_accum=1)
    assert len(lonely) == 1 and float(lonely[0][1].sum()) == 0.0
    assert rank_chunks(micro, 0, 1, 4, 3) == [(m, None) for m in micro]


def test_epoch_batches_restore_the_data_order():
    a = EpochBatches(7, 3, seed=0)
    for _ in range(4):
        next(a)
    b = EpochBatches(7, 3, seed=5)
    b.load_state_dict(a.state_dict())
    assert [next(a).tolist() for _ in range(6)] == [next(b).tolist() for _ in range(6)]


def test_unreadable_checkpoint_is_ignored_and_stale_temporaries_go(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    (tmp_path / ".checkpoint.x1.tmp.pt").write_bytes(b"half-written")
    warned = []
    ckpt = Checkpoints(tmp_path, {"a": 1}, 2, "aplc", warned.append)
    assert ckpt.read() is None and "ignoring unreadable aplc checkpoint" in warned[0]
    assert not (tmp_path / ".checkpoint.x1.tmp.pt").exists()


def _sigterm_after(proc, marker: str) -> str:
    """SIGTERM ``proc`` once its stderr shows ``marker``; its failed exit checked, the rest of stderr."""
    try:
        for line in proc.stderr:
            if marker in line:
                break
        proc.send_signal(signal.SIGTERM)
        err = proc.stderr.read()
        assert proc.wait(timeout=120) != 0
    finally:
        proc.kill()
    return err


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_the_rerun_resumes_from_it(files, tmp_path):
    """A time limit (SLURM's SIGTERM, or USR1 before it): training writes a checkpoint at the end of
    the step and stops with a clear line; the rerun resumes from that step (before: the signal killed
    it and up to checkpoint_every steps were lost)."""
    root, encoder = files
    ckpt = tmp_path / "checkpoint"
    params = {**PARAMS["matcher"], "max_steps": 400, "checkpoint_every": 10_000}  # no periodic checkpoint
    args = arguments(encoder, root / "tokens.npz", root / "Y.npz", root / "C.npz", params, tmp_path / "model",
                     checkpoint_dir=ckpt)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd(), "CUDA_VISIBLE_DEVICES": ""}
    err = _sigterm_after(subprocess.Popen([sys.executable, "-m", "xmc.matcher.launch", *args], env=env,
                                          stderr=subprocess.PIPE, text=True), "step 5/400")
    stopped = re.search(r"stopped by SIGTERM at step (\d+)/400; checkpoint written", err)
    assert stopped, err[-2000:]
    step = int(stopped.group(1))
    assert 5 <= step < 400 and not (tmp_path / "model").exists()
    state = torch.load(ckpt / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    assert state["step"] == step
    logged = []
    model = train(files, "matcher", log=logged.append, checkpoint_dir=ckpt, max_steps=400, checkpoint_every=10_000)
    assert any(f"resuming from step {step}/400" in m for m in logged), logged[:3]
    assert [h["step"] for h in model.history_] == list(range(1, 401))


def test_tf32_is_switched_on_for_cuda_devices_only():
    """fp32 matmuls on Ampere+ GPUs run as TF32 (the paper grid's precision: fp32); on the CPU nothing
    changes. Its accuracy effect is untested here (no GPU): docs/gpus-and-slurm.md says so."""
    from xmc.training import enable_tf32

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        enable_tf32(torch.device("cpu"))
        assert not torch.backends.cuda.matmul.allow_tf32
        enable_tf32(torch.device("cuda", 0))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_both_ranks_at_one_step_with_a_checkpoint(files, tmp_path):
    """A time limit on a data-parallel job: torchrun passes SIGTERM to its ranks, which agree on the
    step (all_reduce), write one checkpoint and stop; the rerun resumes there and finishes."""
    root, encoder = files
    params = {**PARAMS["matcher"], "max_steps": 300, "checkpoint_every": 10_000}
    args = arguments(encoder, root / "tokens.npz", root / "Y.npz", root / "C.npz", params, tmp_path / "model",
                     checkpoint_dir=tmp_path / "checkpoint")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd(), "CUDA_VISIBLE_DEVICES": ""}
    cmd = torchrun_command(2, args, log_dir=tmp_path / "torchrun")  # not a torchelastic_* folder in /tmp
    err = _sigterm_after(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True), "step 5/300")
    steps = set(re.findall(r"stopped by SIGTERM at step (\d+)/300; checkpoint written", err))
    assert len(steps) == 1, err[-3000:]  # both ranks, one step
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and f"resuming from step {steps.pop()}/300" in done.stderr, done.stderr[-3000:]
    assert (tmp_path / "model").is_dir()
