"""Build the embedded EURLEX57K sample: a seeded random subset of the train and test documents.

Reads the full archive with tarfile (nothing is extracted to disk), keeps the fields the reader
uses, and writes a byte-for-byte reproducible .tar.gz in the same layout:

    EURLEX57K/train/<CELEX>.json, EURLEX57K/test/<CELEX>.json, EURLEX57K/EURLEX57K.json

Usage (from the repository root):

    python data/make_eurlex_sample.py --archive PATH [--out PATH] [--n-train 3000] [--n-test 1000] [--seed 0]
"""
from __future__ import annotations

import argparse
import ast
import gzip
import io
import json
import random
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: make xmc importable without installing it

from xmc.io import atomic_path  # noqa: E402

FIELDS = ("celex_id", "title", "header", "recitals", "main_body", "concepts")
TOP = "EURLEX57K"
MTIME = 1_546_300_800  # 2019-01-01, fixed so reruns give the same bytes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archive", type=Path, required=True,
                   help="the full EURLEX57K.tar.gz (its authors' download, repacked as one tar.gz)")
    p.add_argument("--out", type=Path, default=REPO / "data/eurlex57k-sample/eurlex57k-sample.tar.gz")
    p.add_argument("--n-train", type=int, default=3000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def split_of(name: str) -> str | None:
    """'train'/'test'/'dev' for a document member (at any nesting depth), else None."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[-1].endswith(".json") and parts[-2] in ("train", "test", "dev"):
        return parts[-2]
    return None


def _add(tf: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tf.addfile(info, io.BytesIO(data))


def main(argv=None) -> dict:
    args = parse_args(argv)
    for name in ("n_train", "n_test"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    with tarfile.open(args.archive, mode="r:gz") as src:
        members = src.getmembers()
        by_split: dict[str, list[tarfile.TarInfo]] = {"train": [], "test": []}
        concepts_member = None
        for m in members:
            if m.isfile() and split_of(m.name) in by_split:
                by_split[split_of(m.name)].append(m)
            elif m.isfile() and m.name.split("/")[-1] == "EURLEX57K.json":
                concepts_member = m
        if concepts_member is None:
            raise SystemExit(f"{args.archive}: no EURLEX57K.json inside")
        rng = random.Random(args.seed)
        chosen = {}
        for split, n in (("train", args.n_train), ("test", args.n_test)):
            pool = sorted(by_split[split], key=lambda m: m.name.split("/")[-1])
            if n > len(pool):
                raise SystemExit(f"--n-{split} {n} exceeds the {len(pool)} {split} documents")
            for m in rng.sample(pool, n):
                chosen[m.offset] = (split, m)
        docs: dict[str, bytes] = {}
        used: set[str] = set()
        # Read in archive order: forward seeks only, so the gzip stream is decompressed once.
        for offset in sorted(chosen):
            split, m = chosen[offset]
            doc = json.load(src.extractfile(m))
            kept = {k: doc[k] for k in FIELDS if k in doc}
            concepts = kept.get("concepts", [])
            if isinstance(concepts, str):  # some copies store the repr of the list
                concepts = ast.literal_eval(concepts)
            used.update(concepts)
            docs[f"{TOP}/{split}/{m.name.split('/')[-1]}"] = json.dumps(kept, ensure_ascii=False).encode()
        all_concepts = json.load(src.extractfile(concepts_member))
    concepts = {cid: all_concepts[cid] for cid in sorted(used) if cid in all_concepts}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                   compresslevel=9) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for d in (TOP, f"{TOP}/test", f"{TOP}/train"):
                _add(tf, d, None)
            _add(tf, f"{TOP}/EURLEX57K.json",
                 json.dumps(concepts, ensure_ascii=False, indent=1).encode())
            for name in sorted(docs):
                _add(tf, name, docs[name])
        tmp.chmod(0o644)  # mkstemp creates 0600; the archive is meant to be shared
    summary = {"out": str(args.out), "bytes": args.out.stat().st_size,
               "n_train": args.n_train, "n_test": args.n_test, "n_concepts": len(concepts)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
