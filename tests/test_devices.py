"""The GPU slot allocator: disjoint devices for concurrent jobs, freed on exit, failure and kill."""
import errno
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from xmc.devices import assign_gpus, slot_folder, threads_over_cores, threads_per_gpu_job, visible_gpus

REPO = Path(__file__).resolve().parents[1]


def env(devices="0,1,2", **extra):
    return {"XMC_GPU_DEVICES": devices, **extra}


def test_concurrent_jobs_get_disjoint_devices(tmp_path):
    e1, e2, e3 = env(), env(), env()
    with assign_gpus(1, tmp_path, environ=e1) as a, assign_gpus(2, tmp_path, environ=e2) as b:
        assert len(a) == 1 and len(b) == 2
        assert set(a).isdisjoint(b) and set(a) | set(b) == {"0", "1", "2"}
        assert e1["CUDA_VISIBLE_DEVICES"] == a[0] and e2["CUDA_VISIBLE_DEVICES"] == ",".join(b)
        with pytest.raises(TimeoutError, match="no 1 free GPUs"):
            with assign_gpus(1, tmp_path, environ=e3, poll_s=0.01, timeout_s=0.05):
                pass
    assert "CUDA_VISIBLE_DEVICES" not in e1 and "CUDA_VISIBLE_DEVICES" not in e2
    with assign_gpus(3, tmp_path, environ=e3) as c:  # all free again
        assert sorted(c) == ["0", "1", "2"]


def test_devices_are_freed_when_the_job_fails(tmp_path):
    e = env("0")
    with pytest.raises(RuntimeError, match="boom"):
        with assign_gpus(1, tmp_path, environ=e):
            raise RuntimeError("boom")
    with assign_gpus(1, tmp_path, environ=env("0"), timeout_s=0.1) as got:
        assert got == ["0"]


def test_a_waiting_job_starts_when_a_device_is_released(tmp_path):
    messages, got = [], []
    with assign_gpus(1, tmp_path, environ=env("0")):
        waiter = threading.Thread(target=lambda: got.append(
            _hold(tmp_path, messages)))
        waiter.start()
        time.sleep(0.3)
        assert not got and any("waiting for 1 free GPU" in m for m in messages)
    waiter.join(timeout=10)
    assert got == [["0"]] and any("assigned after waiting" in m for m in messages)


def _hold(folder, messages):
    with assign_gpus(1, folder, environ=env("0"), log=messages.append, poll_s=0.05) as d:
        return d


def test_devices_of_a_killed_process_are_freed(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from xmc.devices import assign_gpus
        with assign_gpus(2, {str(tmp_path)!r}, environ={{"XMC_GPU_DEVICES": "0,1"}}) as d:
            print(",".join(d), flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert sorted(proc.stdout.readline().strip().split(",")) == ["0", "1"]
        with pytest.raises(TimeoutError):
            with assign_gpus(1, tmp_path, environ=env("0,1"), poll_s=0.01, timeout_s=0.05):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with assign_gpus(2, tmp_path, environ=env("0,1"), timeout_s=1) as d:
        assert sorted(d) == ["0", "1"]


def test_jobs_inside_one_slurm_allocation_get_disjoint_devices(tmp_path):
    """A whole workflow inside salloc/sbatch: concurrent gpu=1 jobs share out the allocation's GPUs."""
    alloc = dict(SLURM_JOB_ID="42", CUDA_VISIBLE_DEVICES="0,1,2,3")
    e1, e2 = dict(alloc), dict(alloc)
    with assign_gpus(1, tmp_path, environ=e1) as a, assign_gpus(1, tmp_path, environ=e2) as b:
        assert len(a) == len(b) == 1 and a != b and {a[0], b[0]} <= {"0", "1", "2", "3"}
        assert e1["CUDA_VISIBLE_DEVICES"] == a[0] and e2["CUDA_VISIBLE_DEVICES"] == b[0]
        # the executor plugin's case: another job, its own allocation, whose device SLURM numbers 0 too
        with assign_gpus(1, tmp_path, environ=dict(SLURM_JOB_ID="43", CUDA_VISIBLE_DEVICES="0"),
                         timeout_s=0.5) as c:
            assert c == ["0"]
    assert e1["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"  # restored
    assert slot_folder(tmp_path, alloc) != slot_folder(tmp_path, {"SLURM_JOB_ID": "43"}) != slot_folder(tmp_path, {})


def test_a_request_that_cannot_be_met_is_a_warning_naming_the_rule(tmp_path, monkeypatch):
    warnings = []
    log = SimpleNamespace(info=lambda m: None, warning=warnings.append)
    e = {"XMC_GPU_DEVICES": ""}
    with assign_gpus(4, tmp_path, environ=e, log=log, rule="train_matcher") as d:
        assert d == [] and e["CUDA_VISIBLE_DEVICES"] == ""  # hidden: "it runs on the CPU" holds
    assert "CUDA_VISIBLE_DEVICES" not in e
    assert len(warnings) == 1 and "train_matcher asked for 4 GPU(s) but none is visible" in warnings[0]
    assert "runs on the CPU" in warnings[0]
    # SLURM gave no CUDA_VISIBLE_DEVICES and there is no nvidia-smi: the CPU, said
    monkeypatch.setenv("PATH", str(tmp_path))
    with assign_gpus(1, tmp_path, environ={"SLURM_JOB_ID": "7"}, log=log, rule="embed_pretrained") as d:
        assert d == []
    assert "embed_pretrained asked for 1 GPU(s) but none is visible in SLURM allocation 7" in warnings[1]
    # fewer than asked: runs on what there is
    with assign_gpus(4, tmp_path, environ=env("0,1"), log=log, rule="train_matcher") as d:
        assert sorted(d) == ["0", "1"]
    assert "asked for 4 GPU(s) but only 2 (0,1) are visible on this machine: it runs on 2" in warnings[2]
    with assign_gpus(0, tmp_path, environ=env(), log=log) as d:  # asked for none: nothing to say
        assert d == []
    assert len(warnings) == 3


def test_pool_and_bad_requests(tmp_path):
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"XMC_GPU_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "2,3"}) == ["1"]
    with pytest.raises(ValueError, match="non-negative integer"):
        with assign_gpus(-1, tmp_path, environ=env()):
            pass


@pytest.mark.parametrize("cores, total, job, setting, want", [
    (8, 4, 1, None, 2),     # four single-GPU jobs fit in 8 cores
    (8, 4, 4, None, 8),     # a 4-GPU matcher gets them all
    (2, 2, 1, None, 1),
    (3, 4, 1, None, 1),     # never 0
    (8, None, 1, None, 8),  # no --resources gpu: a CPU run, the whole machine
    (8, 4, 0, None, 8),     # matcher_gpus 0: the CPU
    (8, 4, 1, 3, 3),        # resources.threads_per_gpu
    (8, 4, 4, 3, 8),        # capped at --cores
])
def test_threads_per_gpu_job(cores, total, job, setting, want):
    assert threads_per_gpu_job(cores, total, job, setting) == want


def test_threads_per_gpu_job_rejects_bad_values():
    with pytest.raises(ValueError, match="threads_per_gpu must be a positive integer"):
        threads_per_gpu_job(8, 4, 1, 0)
    with pytest.raises(ValueError, match="cores must be an integer >= 1"):
        threads_per_gpu_job(0, 4, 1)


def test_slurm_without_cuda_visible_devices_uses_the_gpus_nvidia_smi_lists(tmp_path, monkeypatch):
    """Some sites set no CUDA_VISIBLE_DEVICES (cgroups hide the other cards): a 4-GPU request then
    gets the 4 devices nvidia-smi lists, not one process."""
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\n" + "".join(f"echo 'GPU {i}: NVIDIA H100 (UUID: GPU-{i})'\n" for i in range(4)))
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(smi.parent))
    e = {"SLURM_JOB_ID": "9"}
    with assign_gpus(4, tmp_path / "locks", environ=e) as d:
        assert sorted(d) == ["0", "1", "2", "3"] and e["CUDA_VISIBLE_DEVICES"] == ",".join(d)


def test_threads_over_cores():
    class Res:  # Snakemake's Resource
        def __init__(self, value):
            self.value = value

    assert threads_over_cores({"train_matcher": Res(8), "cluster": 4, "tfidf": Res(2)}, 4) == {"train_matcher": 8}
    assert threads_over_cores({}, 2) == {}


# ---- any file system, any number of runs ---------------------------------------------------------

def test_the_default_slot_folder_is_node_local_and_shared_by_runs_in_other_folders(tmp_path, monkeypatch):
    """Two workflow runs from two working directories on one host see each other's locks (before,
    each had its own results/.gpu-slots and both got GPU 0)."""
    monkeypatch.delenv("XMC_GPU_LOCK_DIR", raising=False)
    folder = slot_folder(environ={})
    assert folder.is_absolute() and "results" not in folder.parts
    assert folder.parts[:3] == ("/", "dev", "shm") or str(folder).startswith(tempfile.gettempdir())
    code = textwrap.dedent("""
        import sys, time
        from xmc.devices import assign_gpus
        with assign_gpus(1, environ={"XMC_GPU_DEVICES": "0,1"}) as d:
            print(",".join(d), flush=True)
            time.sleep(60)
    """)
    procs = []
    try:
        for run in ("run-a", "run-b"):
            (tmp_path / run).mkdir()
            env = {k: v for k, v in os.environ.items() if k != "XMC_GPU_LOCK_DIR"}
            procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path / run, stdout=subprocess.PIPE,
                                          text=True, env={**env, "PYTHONPATH": str(REPO)}))
        got = [p.stdout.readline().strip() for p in procs]
        assert sorted(got) == ["0", "1"], got
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.ENOLCK])
def test_a_folder_without_flock_falls_back_to_the_node_local_one(tmp_path, monkeypatch, err):
    """Lustre without flock, NFS without lockd: flock raises OSError 38/37. Before, every GPU job
    failed with it; now the job says so once and takes its slots in the node-local folder."""
    shared, local = tmp_path / "lustre", tmp_path / "shm"
    monkeypatch.setattr("xmc.devices.default_lock_dir", lambda: local)
    real = fcntl.flock

    def flock(fd, op):  # the shared folder does not lock; the node-local one does
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(shared)):
            raise OSError(err, os.strerror(err))
        return real(fd, op)

    monkeypatch.setattr("xmc.devices.fcntl.flock", flock)
    warnings = []
    log = SimpleNamespace(info=lambda m: None, warning=warnings.append)
    with assign_gpus(1, shared, environ=env("0,1"), log=log) as a, assign_gpus(1, shared, environ=env("0,1")) as b:
        assert {a[0], b[0]} == {"0", "1"}  # still disjoint: the fallback folder locks
    assert len(warnings) == 1 and f"flock is not supported in {shared}" in warnings[0]
    assert f"[Errno {err}]" in warnings[0] and "XMC_GPU_LOCK_DIR" in warnings[0]
    assert any(p.name.startswith("gpu-") for p in local.rglob("*.lock"))
    # nowhere locks: one clear line naming the setting, not a traceback of flock
    monkeypatch.setattr("xmc.devices.fcntl.flock", lambda fd, op: (_ for _ in ()).throw(OSError(err, "no locks")))
    with pytest.raises(RuntimeError, match=r"flock is not supported in .*set \$XMC_GPU_LOCK_DIR to a node-local"):
        with assign_gpus(1, shared, environ=env("0,1")):
            pass


def test_a_job_the_slurm_executor_plugin_submitted_takes_its_devices_without_locks(tmp_path, monkeypatch):
    """One sbatch per job: the workflow, re-read inside the job (remote execution), sets
    XMC_GPU_LOCKS=0; SLURM gave the job exactly its devices, so no lock is taken (and a file system
    without flock does not matter). Inside salloc (no such mark) the allocation's devices are still
    shared out with locks."""
    def no_flock(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr("xmc.devices.fcntl.flock", no_flock)
    e = {"SLURM_JOB_ID": "77", "CUDA_VISIBLE_DEVICES": "0,1", "SLURM_STEP_GPUS": "0,1", "XMC_GPU_LOCKS": "0"}
    messages = []
    with assign_gpus(2, tmp_path / "nfs", environ=e, log=messages.append) as d:
        assert d == ["0", "1"] and e["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert not (tmp_path / "nfs").exists() and "no lock" in messages[-1]
    # the same allocation without the mark (salloc): locks, which fail here
    monkeypatch.setattr("xmc.devices.default_lock_dir", lambda: tmp_path / "shm")
    del e["XMC_GPU_LOCKS"]
    with pytest.raises(RuntimeError, match="flock is not supported"):
        with assign_gpus(1, tmp_path / "nfs", environ=dict(e)):
            pass
    common = (REPO / "rules" / "common.smk").read_text()
    assert "if workflow.remote_exec:" in common and "os.environ[xmc_devices.LOCKS_ENV] = \"0\"" in common


def test_matcher_gpus_0_hides_every_device(tmp_path):
    """n = 0 (resources.matcher_gpus: 0): CUDA_VISIBLE_DEVICES is "" for the job, so device "auto"
    picks the CPU even on a machine with GPUs (before, nothing was hidden and it picked cuda:0)."""
    e = {"CUDA_VISIBLE_DEVICES": "0,1"}
    with assign_gpus(0, tmp_path, environ=e) as d:
        assert d == [] and e["CUDA_VISIBLE_DEVICES"] == ""
    assert e["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_no_gpu_is_warned_once_per_run(tmp_path, monkeypatch):
    """Seven transformer jobs of one run on a machine without GPUs: one warning on the console, the
    others say it in their own log only (before: the same warning seven times)."""
    monkeypatch.setattr("xmc.devices.default_lock_dir", lambda: tmp_path / "shm")
    warnings, infos = [], []
    log = SimpleNamespace(info=infos.append, warning=warnings.append)
    for run in ("run-1", "run-2"):
        for _ in range(7):
            with assign_gpus(1, tmp_path, environ={"XMC_GPU_DEVICES": "", "XMC_RUN_ID": run}, log=log,
                             rule="predict_matcher"):
                pass
    assert len(warnings) == 2 and all("asked for 1 GPU(s) but none is visible" in w for w in warnings)
    assert sum("none is visible" in m for m in infos) == 12


def test_mig_slices_never_train_data_parallel(tmp_path):
    """CUDA shows a process one MIG slice at most: a 2-GPU request over MIG slices runs on one, said
    (before: torchrun started 2 ranks and rank 1 found no device)."""
    warnings = []
    log = SimpleNamespace(info=lambda m: None, warning=warnings.append)
    e = {"CUDA_VISIBLE_DEVICES": "MIG-aaaa,MIG-bbbb"}
    with assign_gpus(2, tmp_path, environ=e, log=log, rule="train_matcher") as d:
        assert len(d) == 1 and d[0].startswith("MIG-")
    assert "MIG slices" in warnings[0] and "it runs on 1" in warnings[0]
