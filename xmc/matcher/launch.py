"""Train a matcher from the workflow's files, in one process or data-parallel under torchrun.

``python -m xmc.matcher.launch --encoder DIR --tokens train.npz --Y Y.train.npz --C C.npz
--params '{"max_steps": 100, ...}' --output model/ [--checkpoint-dir DIR]`` trains and saves (rank 0).
:func:`torchrun_command` wraps the same arguments in ``python -m torch.distributed.run --standalone
--nproc_per_node N``: each process then takes one device of ``CUDA_VISIBLE_DEVICES`` (local rank)
or, on CPU, joins a gloo group.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np

__all__ = ["main", "torchrun_command", "train_from_files"]


def train_from_files(encoder_dir, tokens, Y, C, params: dict, checkpoint_dir=None, log=None):
    """Read tokens (npz with input_ids, attention_mask), Y (N, L) and C (L, K); train on M = binarise(Y C)."""
    from xmc.io import load_csr
    from xmc.matcher.transformer import MatcherParams, TransformerMatcher
    from xmc.indexing import cluster_targets

    p = MatcherParams.from_dict(params)
    arrays = np.load(tokens)
    M = cluster_targets(load_csr(Y), load_csr(C))
    if log is not None:
        log(f"fine-tuning {encoder_dir} on {M.shape[0]} instances x {M.shape[1]} clusters "
            f"(checkpoints in {checkpoint_dir}): {p}")
    return TransformerMatcher.train(encoder_dir, arrays["input_ids"], arrays["attention_mask"], M, p,
                                    log=log, checkpoint_dir=checkpoint_dir)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m xmc.matcher.launch", description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", required=True, help="encoder folder (config, weights, tokenizer)")
    ap.add_argument("--tokens", required=True, help="npz with input_ids and attention_mask (N, T)")
    ap.add_argument("--Y", required=True, help="CSR npz (N, L) of training labels")
    ap.add_argument("--C", required=True, help="CSR npz (L, K) label -> cluster")
    ap.add_argument("--params", default="{}", help="MatcherParams as a JSON object")
    ap.add_argument("--output", required=True, help="matcher folder to write")
    ap.add_argument("--checkpoint-dir", default=None)
    return ap


def arguments(encoder_dir, tokens, Y, C, params: dict, output, checkpoint_dir=None) -> list[str]:
    """The command-line arguments of :func:`main` for these inputs."""
    args = ["--encoder", str(encoder_dir), "--tokens", str(tokens), "--Y", str(Y), "--C", str(C),
            "--params", json.dumps(params), "--output", str(output)]
    return args + (["--checkpoint-dir", str(checkpoint_dir)] if checkpoint_dir is not None else [])


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """``torchrun`` (as ``python -m torch.distributed.run``, so the same interpreter) for ``nproc``
    data-parallel processes on this machine, each running :func:`main` with ``args``."""
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "xmc.matcher.launch", *args]


def main(argv=None) -> int:
    import torch.distributed as dist

    from xmc.matcher.transformer import distributed_context

    a = _parser().parse_args(argv)
    rank, world, _ = distributed_context()
    logger = logging.getLogger(f"train_matcher[rank {rank}]")
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = json.loads(a.params)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--params: expected a JSON object, got {a.params!r} ({e})") from None
    matcher = train_from_files(a.encoder, a.tokens, a.Y, a.C, params, a.checkpoint_dir,
                               log=logger.info if rank == 0 else None)
    if rank == 0:
        matcher.save(a.output)
    if world > 1 and dist.is_initialized():
        dist.barrier()  # no rank leaves (and tears the group down) before the model is written
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
