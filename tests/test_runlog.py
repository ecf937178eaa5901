"""Workflow script logging: the log file gets everything, the console the warnings."""
import os
import subprocess
import sys
import textwrap


def test_warnings_reach_the_console_and_info_only_the_log(tmp_path):
    log = tmp_path / "job.log"
    code = textwrap.dedent(f"""
        import sys
        from xmc.runlog import start
        log = start({str(log)!r}, "train_matcher")
        log.info("step 1 loss 0.5")
        log.warning("train_matcher asked for 2 GPU(s) but none is visible")
        print("a progress bar", file=sys.stderr)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=60)
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    assert "step 1 loss 0.5" in text and "but none is visible" in text and "a progress bar" in text
    assert "train_matcher asked for 2 GPU(s) but none is visible" in done.stderr
    assert str(log) in done.stderr  # says where the rest is
    assert "step 1 loss" not in done.stderr and "a progress bar" not in done.stderr


def test_the_log_says_how_long_the_process_ran_before_it(tmp_path):
    """The first record: wall seconds from process start to the log (interpreter, imports and here a
    0.5 s sleep), which xmc.timing reads back to tell a job's start-up from its work."""
    from xmc.timing import logged_startup_s

    log = tmp_path / "job.log"
    code = f"import time; time.sleep(0.5); from xmc.runlog import start; start({str(log)!r}, 'cluster')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 0.5 <= logged_startup_s(log.read_text()) < 10
    assert logged_startup_s("no start line") is None


def test_finish_leaves_at_once_with_the_outputs_and_the_log_complete(tmp_path):
    """finish(): status 0, the peak-memory line last in the log, every output written; the
    interpreter's teardown (here an atexit hook) does not run. A failure before it exits as usual."""
    from xmc.timing import logged_peak_mib

    log, out, marker = tmp_path / "job.log", tmp_path / "out.npy", tmp_path / "teardown-ran"
    code = textwrap.dedent(f"""
        import atexit, pathlib, sys
        import numpy as np
        from xmc.io import save_npy
        from xmc.runlog import finish, start
        atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text("ran"))
        log = start({str(log)!r}, "cluster")
        save_npy({str(out)!r}, np.arange(100000))
        print("buffered console line")
        log.info("done")
        if len(sys.argv) > 1:
            raise RuntimeError("a failure before finish")
        finish()
        raise AssertionError("not reached")
    """)
    run = lambda *args: subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                                       env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=60)
    done = run()
    assert done.returncode == 0, done.stderr
    assert "buffered console line" in done.stdout
    import numpy as np
    assert np.array_equal(np.load(out), np.arange(100000))
    lines = log.read_text().splitlines()
    assert "done" in lines[-2] and logged_peak_mib(log.read_text()) > 0
    assert not marker.exists()  # no teardown
    failed = run("fail")
    assert failed.returncode != 0 and "a failure before finish" in log.read_text()
    assert marker.exists()  # a failure takes the usual way out


def test_a_retried_job_keeps_the_failed_attempts_log(tmp_path):
    """Attempt 1 fails, attempt 2 writes the same log path: the first failure's reason is still
    there (<log>.1), and at most three earlier logs are kept (before: overwritten)."""
    log = tmp_path / "train_matcher.log"
    code = ("import sys; from xmc.runlog import start; log = start(%r, 'train_matcher'); "
            "log.info('attempt %%s', sys.argv[1]); sys.exit(sys.argv[2])") % str(log)
    for attempt, status in (("1", "CUDA out of memory"), ("2", "0")):
        subprocess.run([sys.executable, "-c", code, attempt, status], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=60)
    assert "attempt 2" in log.read_text() and f"kept as {log}.1" in log.read_text()
    assert "attempt 1" in (tmp_path / "train_matcher.log.1").read_text()
    for attempt in "345":
        subprocess.run([sys.executable, "-c", code, attempt, "0"], env={**os.environ, "PYTHONPATH": os.getcwd()},
                       timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"train_matcher.log{s}" for s in ("", ".1", ".2", ".3")]
    assert "attempt 4" in (tmp_path / "train_matcher.log.1").read_text()
