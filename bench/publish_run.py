#!/usr/bin/env python
"""Copy one workflow run's tables and figures into docs/results/<name>/ with a README that says
which commit, command and machine produced them.

    python -m bench.publish_run --run /path/to/checkout --dataset eurlex57k \\
        --command "snakemake --configfile config/eurlex57k.yaml" --out docs/results/eurlex57k

``--run`` is the checkout the run happened in (its ``results/`` and its git commit). Copied:
results.csv, table3.md, table5.md, timing.md, timing_steps.csv and the dataset's figures (PNG).
The README lists the headline rows (Table 3) and the total benchmarked job time.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd

from bench.common import cpu, parser

TABLES = ("results.csv", "table3.md", "table5.md", "timing.md", "timing_steps.csv")


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--run", type=Path, required=True, help="checkout the run happened in")
    p.add_argument("--dataset", required=True)
    p.add_argument("--command", required=True, help="the command that ran (for the README)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--notes", default="", help="a paragraph for the README (e.g. whether it ran in one go)")
    args = p.parse_args(argv)
    tables, figures = args.run / "results" / "tables", args.run / "results" / "figures" / args.dataset
    missing = [name for name in TABLES if not (tables / name).is_file()]
    if missing:
        raise SystemExit(f"{tables}: no {', '.join(missing)}: has the run finished?")
    commit = subprocess.run(["git", "-C", str(args.run), "log", "-1", "--format=%h %ad", "--date=short"],
                            check=True, capture_output=True, text=True).stdout.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        shutil.copy2(tables / name, args.out / name)
    for png in sorted(figures.glob("*.png")):
        shutil.copy2(png, args.out / png.name)
    steps = pd.read_csv(tables / "timing_steps.csv")
    total = steps[steps["step"] == "total"].iloc[0]
    readme = [f"# Results: {args.dataset}", "",
              f"Copied from one workflow run by `python -m bench.publish_run`. Commit `{commit}`; command:", "",
              f"    {args.command}", "",
              f"Machine: {cpu()}.", "",
              f"Benchmarked job time: **{total['total_h:m:s']}** over {int(total['jobs'])} jobs "
              f"(the `total` row of [timing_steps.csv](timing_steps.csv); largest job "
              f"{total['max_rss_mb']:,.0f} MB).", ""]
    if args.notes:
        readme += [args.notes, ""]
    readme += ["Files: [results.csv](results.csv) (every model and ensemble), [table3.md](table3.md), "
               "[table5.md](table5.md), [timing.md](timing.md), [timing_steps.csv](timing_steps.csv), and the "
               "figures " + ", ".join(f"[{png.name}]({png.name})" for png in sorted(args.out.glob("*.png"))) + ".", "",
               "## Table 3", "", (tables / "table3.md").read_text().strip(), ""]
    (args.out / "README.md").write_text("\n".join(readme))
    print(f"wrote {args.out} ({commit})")


if __name__ == "__main__":
    main()
