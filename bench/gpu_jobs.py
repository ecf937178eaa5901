"""GPU jobs side by side, on pretend devices: the tiny two-matcher workflow of
tests/test_workflow_gpus.py through Snakemake with `--resources gpu=2` against `gpu=1`.

On a CPU machine two pretend devices (XMC_GPU_DEVICES=0,1) stand for GPUs: the allocator, the
threads per GPU job and Snakemake's scheduling are the real ones, the training runs on the CPU.
The shared stages (data, TF-IDF, clusters, tokens) run first, untimed; then the two train_matcher
jobs are timed, alternating gpu=2 and gpu=1 runs in fresh folders.

    PYTHONPATH=tests python -m bench.gpu_jobs --work /tmp/gpu-jobs --steps 300 --repeats 2 [--devices 0,1]

On a GPU machine, pass the real device ids with --devices. The tiny workflow is the tests' own
(tests/ on PYTHONPATH, as the command above puts it).
"""
from __future__ import annotations

import time
from pathlib import Path

from bench.common import cpu, parser


def main() -> None:
    ap = parser(__doc__, __spec__)
    ap.add_argument("--work", type=Path, required=True, help="empty folder for the runs")
    ap.add_argument("--steps", type=int, default=300, help="matcher.max_steps of each matcher")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--devices", default="0,1", help="XMC_GPU_DEVICES: two device ids")
    a = ap.parse_args()
    from test_workflow_gpus import make_tiny, run  # the tests' tiny workflow: tests/ on PYTHONPATH
    a.work.mkdir(parents=True, exist_ok=False)
    config = make_tiny(a.work)
    config["matcher"]["max_steps"] = a.steps
    shared = ["results/tiny/indexer/pifa-tfidf/C.npz"] + [f"results/tiny/tokens/{e}/train.npz" for e in config["matchers"]]
    matchers = [f"results/tiny/matcher/pifa-tfidf/{e}/model" for e in config["matchers"]]
    print(f"# CPU: {cpu()}; two train_matcher jobs of {a.steps} steps, "
          f"--cores 2, devices {a.devices}")
    times = {"2": [], "1": []}
    for r in range(a.repeats):
        for gpus in ("2", "1"):
            work = a.work / f"run{r}-gpu{gpus}"
            work.mkdir()
            run(work, config, shared, "--cores", "2", devices=a.devices)
            start = time.perf_counter()
            run(work, config, matchers, "--cores", "2", "--resources", f"gpu={gpus}", devices=a.devices)
            times[gpus].append(time.perf_counter() - start)
            print(f"repeat {r + 1}: --resources gpu={gpus}: {times[gpus][-1]:.1f} s", flush=True)
    print("| --resources | wall time of the two matcher jobs (s), each repeat | best |")
    print("|---|---|---|")
    for gpus in ("1", "2"):
        print(f"| gpu={gpus} | {', '.join(f'{t:.1f}' for t in times[gpus])} | {min(times[gpus]):.1f} |")


if __name__ == "__main__":
    main()
