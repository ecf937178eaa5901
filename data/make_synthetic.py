"""Write a synthetic XMC dataset in the AttentionXML form (see xmc.data.synthetic), for scaling runs.

Usage (from the repository root):

    python data/make_synthetic.py OUT_FOLDER --labels 30000 --train 60000 --test 10000 [--vocabulary 50000]
        [--words-per-doc 60] [--labels-per-doc 3] [--seed 0]

Then point a dataset at it: ``datasets: {synth: {source: OUT_FOLDER, format: attentionxml}}``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: make xmc importable without installing it

from xmc.data.synthetic import SyntheticSpec, write_attentionxml  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--labels", type=int, default=4000)
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--vocabulary", type=int, default=20000)
    p.add_argument("--words-per-doc", type=int, default=60)
    p.add_argument("--labels-per-doc", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    spec = SyntheticSpec(n_labels=a.labels, vocabulary=a.vocabulary, words_per_doc=a.words_per_doc,
                         labels_per_doc=a.labels_per_doc)
    start = time.perf_counter()
    write_attentionxml(a.out, a.train, a.test, spec, seed=a.seed)
    print(f"{a.out}: {a.train} train / {a.test} test documents over {a.labels} labels "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
