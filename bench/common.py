"""What every bench script shares: where the checkout is, how to run its workflow in another
folder, and the stamp (commit, host, date) that every CSV a bench script writes carries."""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# the CPU features that decide our kernels' speed (AVX2/AVX-512 for the linear algebra, VNNI/BF16/AMX
# for low-precision matrix products)
KEY_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu() -> str:
    """The host's CPU: lscpu's model name and which of KEY_FLAGS it has (``/proc/cpuinfo`` where
    lscpu is missing)."""
    model, flags = platform.processor(), set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        lines = out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        try:
            lines = Path("/proc/cpuinfo").read_text().splitlines()
        except OSError:
            lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip().lower() == "model name" and value.strip():
            model = value.strip()
        elif key.strip().lower() == "flags":
            flags = set(value.split())
    wanted = [f for f in KEY_FLAGS if f in flags]
    return f"{model}; {', '.join(wanted) or 'no AVX2'}"


def commit(root: Path = ROOT) -> str:
    """The checkout's commit (short id), with ``+dirty`` where tracked files differ from it."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


def stamp() -> dict:
    """commit, host and date (UTC) of this run: the columns every bench CSV ends with."""
    return {"commit": commit(), "host": cpu(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")}


def write_csv(table: pd.DataFrame, path, **to_csv) -> pd.DataFrame:
    """Write ``table`` to ``path`` with the stamp's columns appended; returns the stamped table."""
    stamped = table.assign(**stamp())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stamped.to_csv(path, index=False, **to_csv)
    return stamped


def read_results(tables: Path, split: str) -> pd.DataFrame:
    """A run's results.csv, the rows of one split: ``valid`` where a bench compares settings to
    choose one (a choice is never made on test documents), ``test`` where it reports figures."""
    results = pd.read_csv(Path(tables) / "results.csv", keep_default_na=False)
    return results[results["split"] == split].reset_index(drop=True)


def snakemake_cmd(work: Path, config: Path, *args: str) -> list[str]:
    """This checkout's workflow run in the working folder ``work`` with ``config``."""
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(config), *args]


def absolute_sources(config: dict) -> dict:
    """``config`` with its datasets' relative ``source`` paths made absolute (they are relative to the
    project root; a bench runs Snakemake in another working folder)."""
    for ds in config["datasets"].values():
        if "://" not in ds["source"] and not Path(ds["source"]).is_absolute():
            ds["source"] = str((ROOT / ds["source"]).resolve())
    return config


def merged_config(configfile, *overrides) -> dict:
    """``configfile`` with each override file merged over it, as Snakemake merges several
    ``--configfile``s (mappings key by key, anything else replaced): e.g. a local copy of the data."""
    import yaml

    def merge(base, over):
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over

    config = yaml.safe_load(Path(configfile).read_text())
    for path in overrides:
        config = merge(config, yaml.safe_load(Path(path).read_text()) or {})
    return absolute_sources(config)


def hardlinked_copy(src: Path, dst: Path) -> None:
    """``src``'s results as hard links (rewritten outputs get new inodes: the original stays) and a real
    copy of its Snakemake metadata: a run there redoes only what a changed setting touches. The
    benchmark files are copied: Snakemake rewrites them in place, which through a link would put the
    copy's job times into ``src``'s."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(src / "results"), str(dst / "results")], check=True)
    if (src / "results" / "benchmarks").is_dir():
        shutil.rmtree(dst / "results" / "benchmarks")
        shutil.copytree(src / "results" / "benchmarks", dst / "results" / "benchmarks")
    shutil.copytree(src / ".snakemake", dst / ".snakemake", ignore=shutil.ignore_patterns("log", "locks", "incomplete"))


def tiny_models():
    """The tests' offline tiny random encoders (tests/tiny_models.py), loaded from its file: the tests
    folder is not a package, and a bench script changes no import path."""
    spec = importlib.util.spec_from_file_location("tiny_models", ROOT / "tests" / "tiny_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parser(doc: str, spec) -> argparse.ArgumentParser:
    """A bench script's argument parser: ``--help`` prints its whole docstring (the question and the
    commands that answer it) under ``python -m bench.<name>``. ``spec``: the script's ``__spec__``."""
    prog = f"python -m {spec.name}" if spec is not None else None
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
