"""Command line: ``python -m xmc predict BUNDLE [--input FILE|-] [--output FILE|-] [--top-k K]
[--batch-size B] [--device D] [--ids-only]``.

Reads one text per line (UTF-8) and writes one JSON line per text, best label first:
``{"labels": [{"id": "2173", "text": "common organisation of markets", "score": 0.91}, ...]}``
(``text`` where the bundle carries the labels' texts), or with ``--ids-only``
``{"labels": ["2173", ...], "scores": [0.91, ...]}``. Input errors name the source and the line.
An output file is written atomically: an error (an empty input line, a bad bundle) leaves no
partial file.
"""
from __future__ import annotations

import argparse
import json
import os
import re
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
                                   '{"labels": [{"id": ..., "text": ..., "score": ...}, ...]}, best first.')
    p.add_argument("bundle", help="bundle folder written by the workflow's export rule")
    p.add_argument("--input", "-i", default="-", help="text file, one text per line ('-': standard input)")
    p.add_argument("--output", "-o", default="-", help="JSON lines file ('-': standard output)")
    p.add_argument("--top-k", "-k", type=_positive_int, default=10, help="labels per text (default 10)")
    p.add_argument("--batch-size", "-b", type=_positive_int, default=64,
                   help="texts per encoder forward pass (default 64)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    p.add_argument("--ids-only", action="store_true",
                   help='the label ids only: {"labels": [ids], "scores": [...]} per text')
    return parser


def read_texts(source: str) -> list[str]:
    """Lines of ``source`` ('-': stdin), UTF-8. Errors name the source and the line: bytes that are
    not UTF-8, control characters (NUL, ...), an empty line (one blank line at the very end is
    what editors write, and is accepted)."""
    from xmc.data.readers import clean_controls

    name = "standard input" if source == "-" else source
    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ValueError(f"--input {source}: cannot read ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError(f"{name}, line {line}: not UTF-8 (byte 0x{data[e.start]:02x}); save the texts as "
                         "UTF-8") from None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":  # the final newline ends the last line; it starts no new one
        lines.pop()
        if len(lines) > 1 and not lines[-1].strip("\r"):
            lines.pop()  # one blank line at the end
    for i, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            raise ValueError(f"{name}, line {i}: empty line; expected one text per line")
        lines[i - 1] = clean_controls(line, f"{name}, line {i}")[0]
    if not lines:
        raise ValueError(f"{name}: no texts; expected one text per line")
    return lines


def _json_lines(bundle, texts, top_k, batch_size, ids_only=False):
    names, label_texts = bundle.label_names, bundle.label_texts
    for start in range(0, len(texts), CHUNK):
        for row in bundle.ranked(texts[start:start + CHUNK], top_k=top_k, batch_size=batch_size):
            if ids_only:
                record = {"labels": [names[j] for j, _ in row], "scores": [score for _, score in row]}
            else:
                record = {"labels": [{"id": names[j], **({"text": label_texts[j]} if label_texts else {}),
                                      "score": score} for j, score in row]}
            yield json.dumps(record, ensure_ascii=False) + "\n"


def check_device(device: str) -> None:
    """``--device``: cpu, auto, cuda or cuda:N, and a CUDA device only where this torch sees one;
    checked before the bundle is loaded, so that it is not reported as a damaged bundle."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ValueError(f"--device {device!r}: expected cpu, cuda, cuda:N or auto")
    if device.startswith("cuda"):
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"--device {device}: no CUDA device is available (torch {torch.__version__}, "
                             f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= n:
            raise ValueError(f"--device {device}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")


def check_output(output: str) -> None:
    if output != "-" and os.path.isdir(output):
        raise ValueError(f"--output {output} is a folder; name a file, e.g. {os.path.join(output, 'tags.jsonl')}")


def predict(args) -> None:
    from xmc.bundle import load
    from xmc.io import atomic_path

    check_output(args.output)
    check_device(args.device)
    texts = read_texts(args.input)
    bundle = load(args.bundle, device=args.device)
    if args.output == "-":
        for line in _json_lines(bundle, texts, args.top_k, args.batch_size, args.ids_only):
            sys.stdout.write(line)
        sys.stdout.flush()
    else:
        with atomic_path(args.output) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.writelines(_json_lines(bundle, texts, args.top_k, args.batch_size, args.ids_only))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "predict":
            predict(args)
    except BrokenPipeError:
        # The reader stopped early (`| head`): not an error of ours. Python would still try to flush
        # stdout at exit and print a second traceback; point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # BundleError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # writing the output: permissions, a full disk, ...
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    return 0
