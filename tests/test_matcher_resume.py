"""Matcher checkpoints: a killed run resumes to the same weights and history; clear OOM errors."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

import xmc.matcher.transformer as transformer  # noqa: E402
from helpers import toy_task  # noqa: E402
from xmc.features import tokenize  # noqa: E402
from xmc.matcher.transformer import MatcherParams, TransformerMatcher  # noqa: E402
from xmc.training import CHECKPOINT_FILE  # noqa: E402

# 20 rows in batches of 8: epochs end on a short batch, and checkpoints fall mid-epoch.
N, MAX_STEPS = 20, 12


# One torch thread here and in the subprocess: the same kernels in both (bit-identical runs).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def task(tmp_path_factory, tiny_encoder):
    """A tiny BERT and n docs whose cluster (K = 4) is one keyword among random filler words."""
    encoder = str(tiny_encoder("bert"))
    texts, M = toy_task(N)
    tok = tokenize(texts, encoder, max_length=16)
    return encoder, tok["input_ids"], tok["attention_mask"], M


def params(**kw):
    # dropout and grad_accum > 1 make the RNG and data-order restore matter; warmup the scheduler's.
    base = dict(max_steps=MAX_STEPS, warmup_steps=3, learning_rate=3e-3, batch_size=8, grad_accum=2,
                dropout=0.1, device="cpu", seed=0, log_every=1, checkpoint_every=2)
    base.update(kw)
    return MatcherParams(**base)


def train(task, p, **kw):
    encoder, ids, mask, M = task
    return TransformerMatcher.train(encoder, ids, mask, M, p, **kw)


def assert_same_model(a: TransformerMatcher, b: TransformerMatcher):
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:  # encoder.* and head.*
        assert torch.equal(sa[name], sb[name]), name
    assert a.history_ == b.history_


def checkpoint_step(folder):
    try:
        return torch.load(folder / CHECKPOINT_FILE, map_location="cpu", weights_only=True)["step"]
    except FileNotFoundError:
        return None


SCRIPT = """
import json, sys, time
import numpy as np, scipy.sparse as sp, torch
from xmc.matcher.transformer import MatcherParams, TransformerMatcher
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
data = np.load(args["data"])
M = sp.csr_matrix((data["M_data"], data["M_indices"], data["M_indptr"]), shape=tuple(data["M_shape"]))

def slow_log(message):  # slow the run down so the kill lands mid-training
    print(message, flush=True)
    time.sleep(args["sleep"])

TransformerMatcher.train(args["encoder"], data["ids"], data["mask"], M, MatcherParams(**args["params"]),
                         log=slow_log, checkpoint_dir=args["checkpoint_dir"])
print("FINISHED", flush=True)
"""


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(task, tmp_path):
    encoder, ids, mask, M = task
    ckpt = tmp_path / "checkpoint"
    np.savez(tmp_path / "data.npz", ids=ids, mask=mask, M_data=M.data, M_indices=M.indices,
             M_indptr=M.indptr, M_shape=np.array(M.shape))
    (tmp_path / "train.py").write_text(SCRIPT)
    args = {"threads": torch.get_num_threads(), "data": str(tmp_path / "data.npz"), "sleep": 0.5,
            "encoder": encoder, "checkpoint_dir": str(ckpt), "params": params().to_dict()}
    out = open(tmp_path / "out.txt", "w")
    proc = subprocess.Popen([sys.executable, str(tmp_path / "train.py"), json.dumps(args)],
                            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 120
        while (checkpoint_step(ckpt) or 0) < 4:
            assert proc.poll() is None, f"training ended early:\n{(tmp_path / 'out.txt').read_text()}"
            assert time.monotonic() < deadline, "no checkpoint at step >= 4 within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()
    output = (tmp_path / "out.txt").read_text()
    assert proc.returncode == -signal.SIGKILL and "FINISHED" not in output
    killed_at = checkpoint_step(ckpt)
    assert 4 <= killed_at < MAX_STEPS

    logged = []
    t0 = time.perf_counter()
    resumed = train(task, params(log_every=5), log=logged.append, checkpoint_dir=ckpt)
    t_resume = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh = train(task, params(checkpoint_every=0))
    t_fresh = time.perf_counter() - t0
    print(f"\nkilled at step {killed_at}/{MAX_STEPS}; resume {t_resume:.2f} s, fresh {t_fresh:.2f} s")

    assert f"resuming from step {killed_at}/{MAX_STEPS}" in logged[0]
    assert len(resumed.history_) == MAX_STEPS and [h["step"] for h in resumed.history_] == list(
        range(1, MAX_STEPS + 1))
    assert_same_model(resumed, fresh)
    # the restore really matters: a run that restarts the data order / RNG would differ
    assert not torch.equal(fresh.head.weight, train(task, params(seed=1, checkpoint_every=0)).head.weight)


def test_checkpoint_of_another_run_is_ignored(task, tmp_path):
    ckpt = tmp_path / "checkpoint"
    train(task, params(max_steps=4), checkpoint_dir=ckpt)
    assert checkpoint_step(ckpt) == 4
    (ckpt / ".checkpoint.x1.tmp.pt").write_bytes(b"half-written")  # as a kill mid-write leaves it

    logged = []
    other = train(task, params(max_steps=4, seed=1), log=logged.append, checkpoint_dir=ckpt)
    assert any("ignoring matcher checkpoint" in m and "seed" in m for m in logged)
    assert not any("resuming" in m for m in logged)
    assert not (ckpt / ".checkpoint.x1.tmp.pt").exists()
    assert_same_model(other, train(task, params(max_steps=4, seed=1, checkpoint_every=0)))

    # a finished run's last checkpoint (seed 1, step 4) resumes with no step left to take
    logged = []
    again = train(task, params(max_steps=4, seed=1, log_every=3), log=logged.append, checkpoint_dir=ckpt)
    assert logged == [f"resuming from step 4/4 ({ckpt / CHECKPOINT_FILE})"]
    assert_same_model(again, other)

    # other K: the warning goes to warnings.warn without a log
    encoder, ids, mask, M = task
    M3 = sp.csr_matrix(M.toarray()[:, :3])
    with pytest.warns(UserWarning, match="ignoring matcher checkpoint.*K"):
        TransformerMatcher.train(encoder, ids, mask, M3, params(max_steps=2, warmup_steps=0),
                                 checkpoint_dir=ckpt)

    (ckpt / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    logged = []
    train(task, params(max_steps=2, warmup_steps=0), log=logged.append, checkpoint_dir=ckpt)
    assert any("ignoring unreadable matcher checkpoint" in m for m in logged)


def test_checkpoint_every_zero_writes_nothing(task, tmp_path):
    train(task, params(max_steps=4, checkpoint_every=0), checkpoint_dir=tmp_path / "checkpoint")
    assert not (tmp_path / "checkpoint").exists()
    with pytest.raises(ValueError, match="checkpoint_every"):
        MatcherParams(checkpoint_every=-1)


def test_out_of_memory_names_batch_settings(task, monkeypatch):
    real, calls = transformer._row_hinge_losses, []

    def loss_that_runs_out_of_memory(scores, target):  # a real CPU step, then an OOM at step 2
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(scores, target)

    monkeypatch.setattr(transformer, "_row_hinge_losses", loss_that_runs_out_of_memory)
    with pytest.raises(RuntimeError) as info:
        train(task, params(max_steps=4, checkpoint_every=0))
    message = str(info.value)
    assert not isinstance(info.value, torch.OutOfMemoryError)
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    for part in ("step 2/4", "batch_size 8 per device", "grad_accum 2", "batch_size to 4",
                 "grad_accum to 4", "total batch of 16", "bf16"):
        assert part in message, part
