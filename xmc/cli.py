"""Command line: ``python -m xmc predict BUNDLE [--input FILE|-] [--output FILE|-] [--top-k K]
[--batch-size B] [--device D]``.

Reads one text per line and writes one JSON line per text, ``{"labels": [...], "scores": [...]}``,
best label first. An output file is written atomically: an error (an empty input line, a bad
bundle) leaves no partial file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Texts per call to the model: bounds memory on long inputs while output streams.
CHUNK = 4096


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m xmc", description="X-Transformer models: use a trained model.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="tag texts (one per line) with an exported model bundle",
                       description="Tag texts, one per line, with the top-k labels of an exported bundle "
                                   "(results/{dataset}/models/{model}/). Writes JSON lines "
                                   '{"labels": [...], "scores": [...]}, best first.')
    p.add_argument("bundle", help="bundle folder written by the workflow's export rule")
    p.add_argument("--input", "-i", default="-", help="text file, one text per line ('-': standard input)")
    p.add_argument("--output", "-o", default="-", help="JSON lines file ('-': standard output)")
    p.add_argument("--top-k", "-k", type=_positive_int, default=10, help="labels per text (default 10)")
    p.add_argument("--batch-size", "-b", type=_positive_int, default=64,
                   help="texts per encoder forward pass (default 64)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    return parser


def read_texts(source: str) -> list[str]:
    """Lines of ``source`` ('-': stdin); an empty line is an error that names its line number."""
    name = "standard input" if source == "-" else source
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"--input {source}: cannot read ({e.strerror})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the final newline ends the last line; it starts no new one
        lines.pop()
    for i, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        lines[i - 1] = line
        if not line.strip():
            raise ValueError(f"{name}, line {i}: empty line; expected one text per line")
    if not lines:
        raise ValueError(f"{name}: no texts; expected one text per line")
    return lines


def _json_lines(bundle, texts, top_k, batch_size):
    for start in range(0, len(texts), CHUNK):
        for row in bundle.predict(texts[start:start + CHUNK], top_k=top_k, batch_size=batch_size):
            yield json.dumps({"labels": [label for label, _ in row], "scores": [score for _, score in row]},
                             ensure_ascii=False) + "\n"


def predict(args) -> None:
    from xmc.bundle import load
    from xmc.io import atomic_path

    texts = read_texts(args.input)
    bundle = load(args.bundle, device=args.device)
    if args.output == "-":
        for line in _json_lines(bundle, texts, args.top_k, args.batch_size):
            sys.stdout.write(line)
        sys.stdout.flush()
    else:
        with atomic_path(args.output) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.writelines(_json_lines(bundle, texts, args.top_k, args.batch_size))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "predict":
            predict(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # BundleError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
