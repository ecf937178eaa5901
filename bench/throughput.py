"""Matcher training throughput: our loop (xmc.matcher.transformer) against a bare Hugging Face loop.

Both train the same randomly initialised encoder (built from a config: no weights are downloaded)
with a K-way linear head and the squared hinge loss, on the same random tokens, batch, length and
number of steps, in one run, alternating (ours, bare, ours, bare, ...) so that a busy machine slows
both alike. The bare loop is what a user would write around ``AutoModel``: per step move the batch
to the device, forward (encoder, first-token pooling, dropout, head), loss, backward, clip the
gradient norm, AdamW step (fused, as ours), learning-rate schedule step, zero the gradients. Ours
adds what the workflow needs: targets sliced from a sparse matrix, the loss read back once per step
(NaN guard, history; on a GPU this waits for the step to finish, the bare loop never waits), progress
bar and logging. Times are wall-clock and, for a shared CPU, this process's CPU time as well.

Prints examples/s and tokens/s of each, the ratio ours / bare, and on CUDA the model FLOPs
utilisation: FLOPs per token = 6 x (non-embedding parameters) + 12 x layers x hidden x length
(forward + backward, attention scores included; PaLM's count), over the peak of the card (a table
for H100 / H200, or ``--peak-tflops``).

    python -m bench.throughput --config minilm --batch-size 16 --max-length 128 --steps 20
    python -m bench.throughput --config bert-base --device cuda --precision bf16 --batch-size 32
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from bench.common import parser  # noqa: E402

CONFIGS = {  # BERT-architecture encoders: name -> (hidden, layers, heads, intermediate)
    "tiny": (64, 2, 2, 128),
    "minilm": (384, 6, 12, 1536),  # all-MiniLM-L6-v2
    "bert-base": (768, 12, 12, 3072),
    "bert-large": (1024, 24, 16, 4096),
}
# Dense peak TFLOP/s (no sparsity) of SXM cards by precision; "fp32" is plain FP32 (PyTorch does
# not use TF32 for matmuls unless asked to).
PEAK_TFLOPS = {
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "fp32": 51.0},
    "H100": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
    "H200": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
}


def build_encoder(name: str, folder: Path) -> Path:
    """A random BERT encoder of a named size with a (dummy-vocabulary) fast tokenizer, saved to folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    hidden, layers, heads, inner = CONFIGS[name]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(30522 - 5)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=inner, max_position_embeddings=512)
    BertModel(config).save_pretrained(str(folder))
    return folder


def make_data(n: int, length: int, n_clusters: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 30522, size=(n, length)).astype(np.int32)
    ids[:, 0] = 2  # [CLS]
    mask = np.ones((n, length), dtype=np.int32)
    M = sp.random(n, n_clusters, density=2.0 / n_clusters, format="csr", random_state=seed, dtype=np.float32)
    M.data[:] = 1.0
    return ids, mask, M


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clocks() -> np.ndarray:
    """(wall, this process's CPU time): on a shared machine the CPU seconds measure the work alone."""
    return np.array([time.perf_counter(), time.process_time()])


def run_ours(encoder_dir, ids, mask, M, a, device: torch.device) -> np.ndarray:
    """(wall, CPU) seconds for a.steps optimiser steps after a.warmup steps, of TransformerMatcher.train."""
    from xmc.matcher.transformer import MatcherParams, TransformerMatcher

    stamps = []
    params = MatcherParams(max_steps=a.warmup + a.steps, warmup_steps=1, batch_size=a.batch_size,
                           grad_accum=1, device=str(device), precision=a.precision, pooling="cls",
                           log_every=1, checkpoint_every=0, seed=0)
    # log is called after every step (log_every 1), once the step's loss has been read back.
    TransformerMatcher.train(str(encoder_dir), ids, mask, M, params,
                             log=lambda message: stamps.append(_clocks()))
    return stamps[-1] - stamps[a.warmup - 1]


def run_bare(encoder_dir, ids, mask, M, a, device: torch.device) -> np.ndarray:
    """The same training as a plain Hugging Face loop; seconds for a.steps steps after a.warmup."""
    from transformers import AutoModel, get_linear_schedule_with_warmup

    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(str(encoder_dir)).to(device).train()
    head = torch.nn.Linear(encoder.config.hidden_size, M.shape[1]).to(device)
    dropout = torch.nn.Dropout(0.1)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=5e-5, fused=device.type in ("cpu", "cuda"))
    scheduler = get_linear_schedule_with_warmup(optimizer, 1, a.warmup + a.steps)
    ids_t, mask_t = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))
    targets = torch.from_numpy(M.toarray())
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=a.precision == "fp16")
    n, t0 = ids.shape[0], None
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            _sync(device)
            t0 = _clocks()
        sl = slice((step * a.batch_size) % n, (step * a.batch_size) % n + a.batch_size)
        x, m, y = ids_t[sl].to(device), mask_t[sl].to(device), targets[sl].to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            hidden = encoder(input_ids=x, attention_mask=m).last_hidden_state
            scores = head(dropout(hidden[:, 0]))
        loss = torch.clamp(1.0 - (2.0 * y - 1.0) * scores.float(), min=0.0).pow(2).mean()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return _clocks() - t0


def flops_per_token(encoder_dir, length: int, n_clusters: int) -> float:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(str(encoder_dir))
    h, layers, inner = c.hidden_size, c.num_hidden_layers, c.intermediate_size
    per_layer = 4 * h * h + 4 * h + 2 * h * inner + inner + h + 4 * h  # attention, FFN, 2 LayerNorms
    params = layers * per_layer + h * h + h + h * n_clusters + n_clusters  # + pooler-free head
    return 6.0 * params + 12.0 * layers * h * length


def peak_tflops(device: torch.device, precision: str, given: float | None) -> tuple[float | None, str]:
    if given:
        return given, "given"
    if device.type != "cuda":
        return None, ""
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if key in name:
            return PEAK_TFLOPS[key][precision], f"{key} {precision} table"
    return None, f"unknown card {name!r}: pass --peak-tflops"


def main(argv=None) -> int:
    ap = parser(__doc__, __spec__)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="minilm", help="encoder size (random weights)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=256, help="K, the head's outputs")
    ap.add_argument("--steps", type=int, default=20, help="timed optimiser steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of each loop; the best counts")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the card's peak for MFU")
    a = ap.parse_args(argv)
    if a.warmup < 1 or a.steps < 1:
        ap.error("--warmup and --steps must be >= 1")
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device visible")
    if a.threads:
        torch.set_num_threads(a.threads)
    ids, mask, M = make_data(a.batch_size * (a.warmup + a.steps), a.max_length, a.clusters)
    tokens_per_step = a.batch_size * a.max_length
    with tempfile.TemporaryDirectory() as tmp:
        encoder_dir = build_encoder(a.config, Path(tmp) / a.config)
        fpt = flops_per_token(encoder_dir, a.max_length, a.clusters)
        best = {"ours": np.full(2, np.inf), "bare": np.full(2, np.inf)}
        for r in range(a.repeats):
            for name, fn in (("ours", run_ours), ("bare", run_bare)):
                seconds = fn(encoder_dir, ids, mask, M, a, device)
                best[name] = np.minimum(best[name], seconds)
                print(f"  run {r + 1} {name}: {a.steps * a.batch_size / seconds[0]:8.1f} examples/s wall, "
                      f"{a.steps * a.batch_size / seconds[1]:8.1f} per CPU second", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    peak, peak_src = peak_tflops(device, a.precision, a.peak_tflops)
    dev_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"cpu ({torch.get_num_threads()} threads)")
    print(f"\nmatcher training throughput: {a.config}, {dev_name}, {a.precision}, batch {a.batch_size}, "
          f"length {a.max_length}, K {a.clusters}, {a.steps} steps after {a.warmup} (best of {a.repeats})")
    print(f"{'loop':<6}{'examples/s':>12}{'tokens/s':>12}{'s/step':>10}{'MFU':>8}"
          f"{'examples/CPU-s':>16}")
    for name in ("ours", "bare"):
        s, cpu = best[name]
        tok_s = a.steps * tokens_per_step / s
        mfu = f"{100 * tok_s * fpt / (peak * 1e12):.1f}%" if peak else "-"
        print(f"{name:<6}{a.steps * a.batch_size / s:>12.1f}{tok_s:>12.0f}{s / a.steps:>10.4f}{mfu:>8}"
              f"{a.steps * a.batch_size / cpu:>16.2f}")
    print(f"ratio ours/bare: {best['bare'][0] / best['ours'][0]:.3f} (wall), "
          f"{best['bare'][1] / best['ours'][1]:.3f} (CPU time of this process)"
          + (f"   (MFU: {fpt / 1e6:.1f} MFLOP per token, peak {peak:g} TFLOP/s, {peak_src})" if peak else
             (f"   ({peak_src})" if peak_src else "")))
    if os.path.exists("/proc/loadavg"):
        print("load average:", open("/proc/loadavg").read().split()[:3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
