#!/usr/bin/env python
"""Copy one workflow run's tables, figures and validation picks into docs/results/<name>/ with a
README generated from those files: commit, command, machine, wall and job time, what the
validation split picked and how it scored on test, the headline rows, each matcher's shortlist
recall beside the linear tree's, and the targets the results are held to.

    python -m bench.publish_run --run /tmp/eurlex57k-run --dataset eurlex57k \\
        --configfile config/eurlex57k.yaml --configfile my-eurlex57k.yaml \\
        --command "snakemake --configfile config/eurlex57k.yaml" --out docs/results/eurlex57k

``--run`` is the folder the run happened in (its ``results/``, its ``.snakemake/log/`` and the
checkout's git commit: ``--checkout``, default the run folder); ``--configfile`` the config files
the run was given, in order (the README reads which model plays which role from them). Copied:
results.csv, table3.md, table5.md, timing.md, timing_steps.csv, the ensembles' validation picks
(selection/*.json) and the dataset's figures (PNG). Every figure in the README is read from the
copied files; nothing is typed in by hand except ``--notes``.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pandas as pd

from bench.common import cpu, merged_config, parser
from xmc import config as xc
from xmc import paper

TABLES = ("results.csv", "table3.md", "table5.md", "timing.md", "timing_steps.csv")
LINEAR_ROWS = ("phi_tfidf + linear", "phi_pre + linear", "phi_fnt (+) phi_tfidf + linear")
# issue 35's targets for the ensemble validation picks, on test
TARGET_P1, TARGET_OVER_XR_LINEAR = 93.5, 1.5


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _metric(frame: pd.DataFrame, model: str, column: str = "P@1") -> float:
    if model not in frame.index or frame.loc[model, column] in ("", None):
        return float("nan")
    return float(frame.loc[model, column])


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def best_single_on_valid(results: pd.DataFrame, cfg: dict) -> str | None:
    """The X-Transformer model (one matcher, one ranker: no ensemble) with the highest validation
    P@1; ties go to the first in the grid's order. Reads validation rows only."""
    valid = results[results["split"] == "valid"].set_index("model")
    singles = [m.name for m in xc.transformer_models(cfg) if m.name in valid.index]
    if not singles:
        return None
    return max(singles, key=lambda m: (float(valid.loc[m, "P@1"]), -singles.index(m)))


def shortlists(results: pd.DataFrame) -> pd.DataFrame:
    """One row per matcher (indexer, matcher and, for a linear tree, the features it reads: a tree
    per linear baseline input) with its top-b recall on valid and test."""
    columns = ["indexer", "matcher", "features", "valid", "test"]
    if "shortlist_recall" not in results.columns:
        return pd.DataFrame(columns=columns)
    rows = results[results["shortlist_recall"].astype(str) != ""]
    rows = rows.assign(shortlist_recall=rows["shortlist_recall"].astype(float),  # a tree reads its rankers' input
                       features=rows["ranker_input"].where(rows["matcher"] == xc.LINEAR_MATCHER, ""))
    table = (rows.groupby(["indexer", "matcher", "features", "split"], sort=False)["shortlist_recall"].first()
             .unstack("split").reset_index())
    return table.reindex(columns=columns)


def readme(results: pd.DataFrame, cfg: dict, selections: dict[str, dict], headline: str | None) -> list[str]:
    """The README's sections after its header, from the run's results.csv rows, its resolved config
    and the ensembles' validation picks."""
    valid = results[results["split"] == "valid"].set_index("model")
    test = results[results["split"] == "test"].set_index("model")
    methods = paper.table3_models(cfg)
    groups = paper.model_groups(cfg)
    single = best_single_on_valid(results, cfg)
    out = ["## Chosen on the validation split, scored on test", "",
           "Each choice below was made on the validation documents before any test figure was read; "
           "the test column is what it then scored.", "",
           "| choice | picked | valid P@1 | test P@1 |", "|---|---|---:|---:|"]
    for name, pick in selections.items():
        what = f"{pick['method']} of {', '.join(pick['members'])}"
        out.append(f"| ensemble `{name}` (method auto, {len(pick['candidates'])} candidates tried) | {what} | "
                   f"{_fmt(_metric(valid, name))} | {_fmt(_metric(test, name))} |")
    if single:
        out.append(f"| single X-Transformer model (highest validation P@1) | {single} | "
                   f"{_fmt(_metric(valid, single))} | {_fmt(_metric(test, single))} |")
    out += ["", "## Headline rows (test)", "",
            "| row | model | P@1 | P@3 | P@5 | valid P@1 | shortlist recall (test) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    rows = [("X-Transformer (Table 3)", methods.get("X-Transformer"))]
    rows += [("ensemble picked on validation", name) for name in selections]
    rows += [("single model picked on validation", single)]
    rows += [(row, methods.get(row)) for row in LINEAR_ROWS]
    rows += [(groups[name], name) for name in [m.name for m in xc.xr_models(cfg)] + xc.aplc_models(cfg)]
    rows += [("peer at its published defaults", name) for name in xc.peer_models(cfg)]
    seen = set()
    for label, model in rows:
        if model is None or model in seen or model not in test.index:
            continue
        seen.add(model)
        recall = test.loc[model, "shortlist_recall"] if "shortlist_recall" in test.columns else ""
        out.append(f"| {label} | {model} | " + " | ".join(_fmt(_metric(test, model, k)) for k in ("P@1", "P@3", "P@5"))
                   + f" | {_fmt(_metric(valid, model))} | {_fmt(float(recall)) if recall != '' else ''} |")
    lists = shortlists(results)
    top_b = cfg["matcher"]["top_b"]
    out += ["", f"## Shortlist recall: the share of true labels in each matcher's top-{top_b} clusters", "",
            "The most its rankers can find (results.csv's `shortlist_recall`).", "",
            "| indexer | matcher | features | valid | test |", "|---|---|---|---:|---:|"]
    out += [f"| {r.indexer} | {r.matcher} | {r.features} | {_fmt(r.valid)} | {_fmt(r.test)} |" for r in lists.itertuples()]
    out += ["", "## Targets", "", "| target | figures (test unless said) | |", "|---|---|---|"]
    if headline and headline in test.index:
        p1 = _metric(test, headline)
        out.append(f"| `{headline}` P@1 >= {TARGET_P1} | {_fmt(p1)} | {_met(p1 >= TARGET_P1)} |")
        xr = _metric(test, "xr-linear")
        if not math.isnan(xr):
            out.append(f"| `{headline}` >= XR-Linear + {TARGET_OVER_XR_LINEAR} | {_fmt(p1)} vs "
                       f"{_fmt(xr)} + {TARGET_OVER_XR_LINEAR} | {_met(p1 >= xr + TARGET_OVER_XR_LINEAR)} |")
        members = selections.get(headline, {}).get("members", [])
        if members:
            best = max(members, key=lambda m: _metric(test, m))
            out.append(f"| `{headline}` not below its best member | {_fmt(p1)} vs {best} {_fmt(_metric(test, best))} | "
                       f"{_met(p1 >= _metric(test, best))} |")
    linear = [m for m in (methods.get(r) for r in LINEAR_ROWS) if m and m in test.index]
    best_linear = max(linear, key=lambda m: _metric(test, m)) if linear else None
    for label, model in (("X-Transformer row", methods.get("X-Transformer")), ("single model picked on validation", single)):
        if model and best_linear and model in test.index:
            p1, bar = _metric(test, model), _metric(test, best_linear)
            out.append(f"| {label} `{model}` beats all three linear baselines | {_fmt(p1)} vs {best_linear} {_fmt(bar)} | "
                       f"{_met(p1 > bar)} |")
    # the bar is the paper's linear tree: the one on phi_tfidf (the phi_tfidf + linear row's)
    baseline = methods.get("phi_tfidf + linear")
    features = xc.describe_model(cfg, baseline).input if baseline else None
    tree = lists[(lists["matcher"] == xc.LINEAR_MATCHER) & (lists["features"] == features)]
    if len(tree):
        ref = tree.iloc[0]
        for r in lists[lists["matcher"] != xc.LINEAR_MATCHER].itertuples():
            ok = r.valid >= ref.valid and r.test >= ref.test
            out.append(f"| {r.indexer} x {r.matcher} top-{top_b} holds as many true labels as the linear tree's "
                       f"on {features} | valid {_fmt(r.valid)} vs {_fmt(ref.valid)}, test {_fmt(r.test)} vs {_fmt(ref.test)} "
                       f"| {_met(ok)} |")
    return out


def wall_time(run: Path) -> str | None:
    """From the first Snakemake log's start (its file name) to the last log's last write. A run
    resumed after a stop has several logs: the span then includes the stops, and says so."""
    logs = sorted((run / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None
    start = datetime.strptime(logs[0].name.split(".")[0], "%Y-%m-%dT%H%M%S")
    end = datetime.fromtimestamp(logs[-1].stat().st_mtime)
    text = logs[-1].read_text(errors="replace")
    done = [line for line in text.splitlines() if "steps (100%) done" in line]
    minutes = (end - start).total_seconds() / 60
    resumed = (f"; {len(logs)} Snakemake invocations, each resuming where the previous stopped, the time "
               f"between them included; logs {', '.join(f'`{log.name}`' for log in logs)}"
               if len(logs) > 1 else f", log `{logs[-1].name}`")
    return (f"{int(minutes // 60)} h {int(minutes % 60)} min of Snakemake wall time ({start:%Y-%m-%d %H:%M} to "
            f"{end:%H:%M}{resumed}{'; last invocation: ' + done[-1].strip() if done else ''})")


def main(argv=None) -> None:
    p = parser(__doc__, __spec__)
    p.add_argument("--run", type=Path, required=True, help="the folder the run happened in")
    p.add_argument("--checkout", type=Path, help="the checkout whose commit ran (default: --run)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--configfile", action="append", required=True, help="the run's config files, in order")
    p.add_argument("--command", required=True, help="the command that ran (for the README)")
    p.add_argument("--headline", default="picked-on-valid", help="the ensemble the targets are about")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--notes", default="", help="a paragraph for the README (e.g. how the choices were made)")
    args = p.parse_args(argv)
    tables, figures = args.run / "results" / "tables", args.run / "results" / "figures" / args.dataset
    missing = [name for name in TABLES if not (tables / name).is_file()]
    if missing:
        raise SystemExit(f"{tables}: no {', '.join(missing)}: has the run finished?")
    commit = subprocess.run(["git", "-C", str(args.checkout or args.run), "log", "-1", "--format=%h %ad", "--date=short"],
                            check=True, capture_output=True, text=True).stdout.strip()
    cfg = xc.resolve(merged_config(*args.configfile))
    if args.out.exists():
        shutil.rmtree(args.out)  # only what this run wrote
    (args.out / "selection").mkdir(parents=True)
    for name in TABLES:
        shutil.copy2(tables / name, args.out / name)
    for png in sorted(figures.glob("*.png")):
        shutil.copy2(png, args.out / png.name)
    selections = {}
    for path in sorted((args.run / "results" / args.dataset / "selection").glob("*.json")):
        shutil.copy2(path, args.out / "selection" / path.name)
        selections[path.stem] = json.loads(path.read_text())
    results = pd.read_csv(args.out / "results.csv", keep_default_na=False)
    results = results[results["dataset"] == args.dataset]
    steps = pd.read_csv(args.out / "timing_steps.csv")
    total = steps[steps["step"] == "total"].iloc[0]
    wall = wall_time(args.run)
    lines = [f"# Results: {args.dataset}", "",
             f"Generated by `python -m bench.publish_run` from one workflow run, from an empty `results/`, "
             f"at commit `{commit}`; command:", "", f"    {args.command}", "",
             f"Machine: {cpu()}.", "",
             *([f"Wall time: {wall}.", ""] if wall else []),
             f"Benchmarked job time: **{total['total_h:m:s']}** over {int(total['jobs'])} jobs "
             f"(the `total` row of [timing_steps.csv](timing_steps.csv); largest job "
             f"{total['max_rss_mb']:,.0f} MB).", ""]
    if args.notes:
        lines += [args.notes, ""]
    lines += readme(results, cfg, selections, args.headline)
    lines += ["", "## Table 3 (test)", "", (args.out / "table3.md").read_text().strip(), "",
              "## Table 5 (test)", "", (args.out / "table5.md").read_text().strip(), "",
              "Files: [results.csv](results.csv) (every model and ensemble, validation and test rows), "
              "[table3.md](table3.md), [table5.md](table5.md), [timing.md](timing.md), "
              "[timing_steps.csv](timing_steps.csv), the validation picks [selection/](selection/), and the figures "
              + ", ".join(f"[{png.name}]({png.name})" for png in sorted(args.out.glob("*.png"))) + ".", ""]
    (args.out / "README.md").write_text("\n".join(lines))
    print(f"wrote {args.out} ({commit})")


if __name__ == "__main__":
    main()
