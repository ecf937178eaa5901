"""The GPU slot allocator: disjoint devices for concurrent jobs, freed on exit, failure and kill."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from xmc.devices import assign_gpus, visible_gpus


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


def test_scheduler_assignment_and_cpu_machines_are_left_alone(tmp_path):
    e = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3,5", "XMC_GPU_DEVICES": "0"}
    with assign_gpus(2, tmp_path, environ=e) as d:
        assert d == ["3", "5"] and e["CUDA_VISIBLE_DEVICES"] == "3,5"
    assert not list(tmp_path.iterdir())  # no lock taken
    e = {"XMC_GPU_DEVICES": ""}
    with assign_gpus(1, tmp_path, environ=e) as d:
        assert d == [] and "CUDA_VISIBLE_DEVICES" not in e


def test_pool_and_bad_requests(tmp_path):
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"XMC_GPU_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "2,3"}) == ["1"]
    with pytest.raises(ValueError, match="asks for 4 GPUs but this machine has 3"):
        with assign_gpus(4, tmp_path, environ=env()):
            pass
    with pytest.raises(ValueError, match="non-negative integer"):
        with assign_gpus(-1, tmp_path, environ=env()):
            pass
