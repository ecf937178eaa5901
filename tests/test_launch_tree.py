"""A killed data-parallel job takes its whole process tree with it: torchrun and its ranks end with
the job (parent-death signals), and the job's devices stay taken until they are gone."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import scipy.sparse as sp

from xmc.devices import assign_gpus
from xmc.io import save_csr

pytestmark = pytest.mark.slow  # torchrun with two gloo processes

REPO = Path(__file__).resolve().parents[1]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ranks(job: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in job.children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "xmc.matcher.launch" in cmd and "torch.distributed.run" not in cmd:
            found.append(child)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_sigkill_of_a_job_takes_torchrun_and_its_ranks_and_holds_the_devices_until_then(tmp_path, tiny_encoder):
    encoder = Path(shutil.copytree(tiny_encoder("bert"), tmp_path / "bert"))
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 60, size=(16, 8)).astype(np.int32)
    np.savez(tmp_path / "tokens.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    save_csr(tmp_path / "Y.npz", sp.csr_matrix(np.eye(16, 4, dtype=np.float32) + np.eye(16, 4, k=-4, dtype=np.float32)))
    save_csr(tmp_path / "C.npz", sp.csr_matrix(np.eye(4, 2, dtype=np.float32) + np.eye(4, 2, k=-2, dtype=np.float32)))
    params = dict(max_steps=100_000, batch_size=4, grad_accum=1, device="cpu", seed=0, log_every=1,
                  checkpoint_every=0, warmup_steps=1)
    locks = tmp_path / "locks"
    job_code = textwrap.dedent(f"""
        from xmc.devices import assign_gpus
        from xmc.matcher.launch import train_and_save
        with assign_gpus(2, {str(locks)!r}) as gpus:
            train_and_save(len(gpus), {str(encoder)!r}, {str(tmp_path / 'tokens.npz')!r}, {str(tmp_path / 'Y.npz')!r},
                           {str(tmp_path / 'C.npz')!r}, {json.dumps(params)}, {str(tmp_path / 'model')!r},
                           {str(tmp_path / 'checkpoint')!r}, print)
    """)
    log = open(tmp_path / "job.log", "w")
    env = {**os.environ, "PYTHONPATH": str(REPO), "XMC_GPU_DEVICES": "0,1", "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmp_path)}  # the killed job leaves its rank-file folder there
    job = subprocess.Popen([sys.executable, "-c", job_code], stdout=log, stderr=subprocess.STDOUT, env=env)
    tree = []
    try:
        deadline = time.monotonic() + 240
        while len(_ranks(psutil.Process(job.pid))) < 2 or "step" not in (tmp_path / "job.log").read_text():
            assert job.poll() is None and time.monotonic() < deadline, (tmp_path / "job.log").read_text()[-3000:]
            time.sleep(0.5)
        tree = psutil.Process(job.pid).children(recursive=True)  # torchrun and the two ranks
        assert len(tree) >= 3
        job.send_signal(signal.SIGKILL)
        job.wait()
        survivors_when_free = None
        deadline = time.monotonic() + 120
        while survivors_when_free is None:
            assert time.monotonic() < deadline, "the job's devices were never released"
            try:
                with assign_gpus(2, locks, environ={"XMC_GPU_DEVICES": "0,1"}, poll_s=0.01, timeout_s=0.0):
                    survivors_when_free = [p.pid for p in tree if _alive(p)]
            except TimeoutError:
                time.sleep(0.02)
        assert survivors_when_free == [], "devices handed out while the killed job's processes still ran"
        time.sleep(1)
        assert not any(_alive(p) for p in tree)
    finally:
        if job.poll() is None:
            job.kill()
        for p in tree:
            if _alive(p):
                p.kill()
        log.close()


def test_die_with_parent_sets_the_parent_death_signal():
    """prctl(PR_SET_PDEATHSIG) in a child: the grandchild ends when its parent is SIGKILLed."""
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    code = textwrap.dedent("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; from xmc.matcher.launch import die_with_parent; "
            "assert die_with_parent(signal.SIGKILL); print('armed', flush=True); time.sleep(120)"],
            stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "armed"
        print(child.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    grandchild = psutil.Process(int(parent.stdout.readline()))
    parent.kill()
    parent.wait()
    grandchild.wait(timeout=10)  # raises TimeoutExpired if it outlived its parent
