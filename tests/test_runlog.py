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
