"""GPU checks without Snakemake or packaged weights (run by hand on a GPU machine).

1. Slot allocator: two jobs start together, each asking ``xmc.devices.assign_gpus(1)`` over the
   machine's GPUs (found with nvidia-smi), and each runs matmuls for a few seconds on what it got.
   With >= 2 GPUs they must get different devices (different UUIDs) and overlap in time; with one
   GPU the second must wait until the first releases it.
2. With >= 2 GPUs: data-parallel matcher training (torchrun, NCCL) on 2 devices follows the loss of
   one device with the same total batch.

    python -m bench.gpu_check
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import parser  # noqa: E402

JOB = textwrap.dedent("""
    import json, os, sys, time
    import torch  # importing does not initialise CUDA: CUDA_VISIBLE_DEVICES set below still counts
    from xmc.devices import assign_gpus
    name, lock_dir, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
    asked = time.time()
    with assign_gpus(1, lock_dir, log=lambda m: print(f"[{name}] {m}", file=sys.stderr, flush=True),
                     poll_s=0.2) as devices:
        got = time.time()
        x = torch.randn(4096, 4096, device="cuda")
        end = got + hold
        while time.time() < end:
            y = x @ x
            torch.cuda.synchronize()
        info = {"job": name, "devices": devices, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "torch_sees": torch.cuda.device_count(), "uuid": str(torch.cuda.get_device_properties(0).uuid),
                "asked": asked, "got": got, "released": time.time()}
    print(json.dumps(info), flush=True)
""")


def check_slots() -> bool:
    from xmc.devices import visible_gpus

    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "XMC_GPU_DEVICES")}
    pool = visible_gpus(env)
    print(f"slot allocator: GPUs found by nvidia-smi: {pool}")
    if not pool:
        print("FAIL: no GPU found")
        return False
    with tempfile.TemporaryDirectory() as lock_dir:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
        procs = [subprocess.Popen([sys.executable, "-c", JOB, name, lock_dir, "4"], env=env,
                                  stdout=subprocess.PIPE, text=True) for name in ("job-A", "job-B")]
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            if p.returncode != 0:
                print(f"FAIL: a job exited with {p.returncode}")
                return False
            results.append(json.loads(out.strip().splitlines()[-1]))
    t0 = min(r["asked"] for r in results)
    for r in results:
        print(f"  {r['job']}: devices {r['devices']} (CUDA_VISIBLE_DEVICES={r['CUDA_VISIBLE_DEVICES']}, torch sees "
              f"{r['torch_sees']}, uuid {r['uuid']}), asked at {r['asked'] - t0:.1f} s, got it at "
              f"{r['got'] - t0:.1f} s, released at {r['released'] - t0:.1f} s")
    a, b = sorted(results, key=lambda r: r["got"])
    overlap = b["got"] < a["released"]
    if len(pool) >= 2:
        ok = a["uuid"] != b["uuid"] and set(a["devices"]).isdisjoint(b["devices"]) and overlap
        print(("OK" if ok else "FAIL") + f": 2 concurrent jobs on {len(pool)} GPUs got "
              f"{'different' if a['uuid'] != b['uuid'] else 'THE SAME'} devices and "
              f"{'ran at the same time' if overlap else 'did not overlap'}")
    else:
        ok = not overlap and a["uuid"] == b["uuid"]
        print(("OK" if ok else "FAIL") + f": one GPU; the second job waited {b['got'] - b['asked']:.1f} s and "
              f"started {b['got'] - a['released']:+.2f} s after the first released the device"
              + ("" if ok else " (THEY OVERLAPPED)"))
    return ok


def check_ddp() -> bool:
    import numpy as np
    import scipy.sparse as sp

    from bench.throughput import build_encoder, make_data
    from xmc.io import save_csr
    from xmc.matcher.launch import arguments, torchrun_command

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        enc = build_encoder("minilm", tmp / "minilm")
        cfg = json.loads((enc / "config.json").read_text())
        cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # same masks everywhere
        (enc / "config.json").write_text(json.dumps(cfg))
        ids, mask, M = make_data(512, 128, 64)
        np.savez(tmp / "tokens.npz", input_ids=ids, attention_mask=mask)
        save_csr(tmp / "Y.npz", M)
        save_csr(tmp / "C.npz", sp.identity(64, dtype=np.float32, format="csr"))  # one label per cluster
        params = dict(max_steps=20, warmup_steps=2, batch_size=32, grad_accum=2, dropout=0.0, device="cuda",
                      log_every=1, checkpoint_every=0, learning_rate=1e-4, head_learning_rate=1e-2)
        losses, times = {}, {}
        for n in (1, 2):
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(n)))}
            args = arguments(enc, tmp / "tokens.npz", tmp / "Y.npz", tmp / "C.npz", params, tmp / f"out{n}")
            cmd = torchrun_command(n, args) if n > 1 else [sys.executable, "-m", "xmc.matcher.launch", *args]
            t = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
            times[n] = time.perf_counter() - t
            if done.returncode != 0:
                print(f"FAIL: {n}-GPU training exited with {done.returncode}:\n{done.stderr[-3000:]}")
                return False
            hist = json.loads((tmp / f"out{n}" / "matcher.json").read_text())["history"]
            losses[n] = np.array([h["loss"] for h in hist])
        rel = np.max(np.abs(losses[2] - losses[1]) / np.abs(losses[1]))
        ok = rel < 1e-2
        print(f"data-parallel: loss 1 GPU {losses[1][[0, -1]].round(5)}, 2 GPUs {losses[2][[0, -1]].round(5)}; "
              f"max relative difference over 20 steps {rel:.2e}; wall {times[1]:.1f} s vs {times[2]:.1f} s "
              f"(including start-up)")
        print(("OK" if ok else "FAIL") + ": 2-GPU DDP follows the 1-GPU loss with the same total batch")
        return ok


def main(argv=None) -> int:
    parser(__doc__, __spec__).parse_args(argv)
    ok = check_slots()
    from xmc.devices import visible_gpus

    if len(visible_gpus({k: v for k, v in os.environ.items() if k != "XMC_GPU_DEVICES"})) >= 2:
        ok = check_ddp() and ok
    else:
        print("data-parallel check skipped: fewer than 2 GPUs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
