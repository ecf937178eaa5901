"""Train a transformer model from the workflow's files, in one process or data-parallel under torchrun.

The three models share :func:`xmc.training.train_loop`, so all three train the same ways:
``system`` "matcher" (:class:`~xmc.matcher.transformer.TransformerMatcher`), "xr"
(:class:`~xmc.matcher.xr.XRTransformer`) or "aplc" (:class:`~xmc.aplc.APLC`).

``python -m xmc.matcher.launch --system matcher --encoder DIR --tokens train.npz --Y Y.train.npz
--C C.npz --params '{"max_steps": 100, ...}' --output model/ [--checkpoint-dir DIR]`` trains and
saves (rank 0). :func:`torchrun_command` wraps the same arguments in ``python -m
torch.distributed.run --standalone --nproc_per_node N``: each process then takes one device of
``CUDA_VISIBLE_DEVICES`` (local rank) or, on CPU, joins a gloo group. :func:`train_and_save` is
what the workflow's training rules call: one process for one device, torchrun for several.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np

__all__ = ["SYSTEMS", "main", "torchrun_command", "train_from_files", "train_and_save", "die_with_parent"]

SYSTEMS = ("matcher", "xr", "aplc")
JOB_PID_ENV = "XMC_JOB_PID"  # the job that launched torchrun: its ranks end when it is gone
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent ends (Linux prctl
    PR_SET_PDEATHSIG; False elsewhere). A child started with subprocess otherwise outlives a
    SIGKILLed parent: torchrun and its ranks would go on using the job's GPUs and writing its model
    folder after the job was killed and its devices handed to the next job."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _torchrun_preexec() -> None:  # in the child, before exec: torchrun ends (SIGTERM) with the job
    die_with_parent(signal.SIGTERM)


def _job_gone() -> bool:
    """True when the job that launched this rank has already ended (before die_with_parent)."""
    job = os.environ.get(JOB_PID_ENV)
    if os.getppid() == 1:
        return True
    if not job:
        return False
    try:
        os.kill(int(job), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def train_from_files(encoder_dir, tokens, Y, C, params: dict, checkpoint_dir=None, log=None,
                     system: str = "matcher", xr: dict | None = None, init_emb=None):
    """Read tokens (npz with input_ids, attention_mask), Y (N, L) and C (L, K; unused by APLC) and
    train ``system``. ``init_emb``: a .npy of the pretrained pooled embeddings of the training
    documents for the matcher's head_init. Returns the trained model (it has ``save(folder)``)."""
    from xmc.io import load_csr

    if system not in SYSTEMS:
        raise ValueError(f"system must be one of {SYSTEMS}, got {system!r}")
    arrays = np.load(tokens)
    ids, mask, Y = arrays["input_ids"], arrays["attention_mask"], load_csr(Y)
    if system == "aplc":
        from xmc.aplc import APLC, APLCParams

        p = APLCParams.from_dict(params)
        if log is not None:
            log(f"APLC: {encoder_dir} on {Y.shape[0]} instances x {Y.shape[1]} labels "
                f"(checkpoints in {checkpoint_dir}): {p}")
        model = APLC.train(encoder_dir, ids, mask, Y, p, log=log, checkpoint_dir=checkpoint_dir)
        if log is not None:
            log(f"trained in {model.train_seconds_:.1f} s")
        return model

    from xmc.matcher.transformer import MatcherParams, TransformerMatcher

    p, C = MatcherParams.from_dict(params), load_csr(C)
    if system == "matcher":
        from xmc.indexing import cluster_targets

        M = cluster_targets(Y, C)
        if log is not None:
            log(f"fine-tuning {encoder_dir} on {M.shape[0]} instances x {M.shape[1]} clusters "
                f"(checkpoints in {checkpoint_dir}): {p}")
        E = np.load(init_emb, allow_pickle=False) if init_emb is not None and p.head_init != "random" else None
        return TransformerMatcher.train(encoder_dir, ids, mask, M, p, log=log, checkpoint_dir=checkpoint_dir,
                                        init_embeddings=E)

    from xmc.matcher.xr import XRParams, XRTransformer

    if np.any(np.diff(C.indptr) != 1):
        raise ValueError("C: every label needs exactly one cluster")
    x = XRParams.from_dict(xr or {})
    if log is not None:
        log(f"XR-Transformer: {encoder_dir} on {Y.shape[0]} instances, K = {C.shape[1]} "
            f"(checkpoints in {checkpoint_dir}): {p}, {x}")
    matcher = XRTransformer.train(encoder_dir, ids, mask, Y, C.indices, C.shape[1], p, x, log=log,
                                  checkpoint_dir=checkpoint_dir)
    for level in matcher.xr_levels_ if log is not None else ():
        log("level K_t = %(level)d: %(steps)d steps in %(seconds).1f s, %(candidates).1f candidates per "
            "instance" % level)
    return matcher


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m xmc.matcher.launch", description=__doc__.split("\n")[0])
    ap.add_argument("--system", choices=SYSTEMS, default="matcher", help="the model to train")
    ap.add_argument("--encoder", required=True, help="encoder folder (config, weights, tokenizer)")
    ap.add_argument("--tokens", required=True, help="npz with input_ids and attention_mask (N, T)")
    ap.add_argument("--Y", required=True, help="CSR npz (N, L) of training labels")
    ap.add_argument("--C", default=None, help="CSR npz (L, K) label -> cluster (matcher, xr)")
    ap.add_argument("--params", default="{}", help="MatcherParams (APLCParams for aplc) as a JSON object")
    ap.add_argument("--xr", default="{}", help="XRParams as a JSON object (xr)")
    ap.add_argument("--output", required=True, help="model folder to write")
    ap.add_argument("--checkpoint-dir", default=None)
    ap.add_argument("--init-emb", default=None, help=".npy (N, hidden): pretrained embeddings for head_init")
    return ap


def arguments(encoder_dir, tokens, Y, C, params: dict, output, checkpoint_dir=None, system: str = "matcher",
              xr: dict | None = None, init_emb=None) -> list[str]:
    """The command-line arguments of :func:`main` for these inputs."""
    args = ["--system", system, "--encoder", str(encoder_dir), "--tokens", str(tokens), "--Y", str(Y),
            "--params", json.dumps(params), "--output", str(output)]
    args += ["--C", str(C)] if C is not None else []
    args += ["--xr", json.dumps(xr)] if xr is not None else []
    args += ["--init-emb", str(init_emb)] if init_emb is not None else []
    return args + (["--checkpoint-dir", str(checkpoint_dir)] if checkpoint_dir is not None else [])


def torchrun_command(nproc: int, args: list[str], log_dir=None) -> list[str]:
    """``torchrun`` (as ``python -m torch.distributed.run``, so the same interpreter) for ``nproc``
    data-parallel processes on this machine, each running :func:`main` with ``args``. ``log_dir``:
    where torchrun keeps its per-rank files; without it torchrun makes a ``torchelastic_*`` folder in
    the temporary directory and never removes it (one per training job)."""
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    logs = ["--log-dir", str(log_dir)] if log_dir is not None else []
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *logs,
            "-m", "xmc.matcher.launch", *args]


def train_and_save(n_devices: int, encoder_dir, tokens, Y, C, params: dict, output, checkpoint_dir, log,
                   system: str = "matcher", xr: dict | None = None, init_emb=None) -> None:
    """Train and write ``output``: in this process on one device (or the CPU), else one torchrun
    process per device. The checkpoint folder goes once the model is written."""
    if n_devices > 1:  # data-parallel: one process per device, rank 0 writes the model
        from xmc.devices import held_lock_fds

        with tempfile.TemporaryDirectory(prefix="xmc-torchrun-") as rank_files:  # the ranks' output is in the job log
            cmd = torchrun_command(n_devices, arguments(encoder_dir, tokens, Y, C, params, output, checkpoint_dir,
                                                        system, xr, init_emb), log_dir=rank_files)
            log(f"launching {' '.join(cmd)}")
            sys.stderr.flush()
            # The whole tree goes with the job: torchrun gets SIGTERM when this process ends (even by
            # SIGKILL), stops its ranks and waits for them; each rank gets SIGKILL if torchrun itself
            # dies (main). torchrun inherits the device locks (pass_fds), so the devices stay taken
            # until it, and so its ranks, are gone.
            done = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, pass_fds=held_lock_fds(),
                                  preexec_fn=_torchrun_preexec, env={**os.environ, JOB_PID_ENV: str(os.getpid())})
        if done.returncode != 0:
            raise SystemExit(f"data-parallel {system} training failed (exit status {done.returncode}); "
                             "see the rank logs above")
    else:
        train_from_files(encoder_dir, tokens, Y, C, params, checkpoint_dir, log=log, system=system,
                         xr=xr, init_emb=init_emb).save(output)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def main(argv=None) -> int:
    import torch.distributed as dist

    from xmc.training import distributed_context

    a = _parser().parse_args(argv)
    rank, world, _ = distributed_context()
    if world > 1 and die_with_parent(signal.SIGKILL) and _job_gone():
        return 1  # the job (or torchrun) ended before this rank could ask to end with it
    logger = logging.getLogger(f"train_{a.system}[rank {rank}]")
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    decoded = {}
    for name in ("params", "xr"):
        try:
            decoded[name] = json.loads(getattr(a, name))
        except json.JSONDecodeError as e:
            raise SystemExit(f"--{name}: expected a JSON object, got {getattr(a, name)!r} ({e})") from None
    if a.system != "aplc" and a.C is None:
        raise SystemExit(f"--C is required for --system {a.system}")
    model = train_from_files(a.encoder, a.tokens, a.Y, a.C, decoded["params"], a.checkpoint_dir,
                             log=logger.info if rank == 0 else None, system=a.system, xr=decoded["xr"],
                             init_emb=a.init_emb)
    if rank == 0:
        model.save(a.output)
    if world > 1 and dist.is_initialized():
        dist.barrier()  # no rank leaves (and tears the group down) before the model is written
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
