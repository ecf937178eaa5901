"""The GPU slot allocator: disjoint devices for concurrent jobs, freed on exit, failure and kill."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from types import SimpleNamespace

import pytest

from xmc.devices import assign_gpus, slot_folder, threads_over_cores, threads_per_gpu_job, visible_gpus


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
        assert d == [] and "CUDA_VISIBLE_DEVICES" not in e
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
