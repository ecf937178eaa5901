from xmc.io import atomic_path
from xmc.runlog import finish, start
from xmc.tables import html_page, to_markdown, write_table
from xmc.timing import read_benchmarks, read_logged_peaks, timing_by_step, timing_table

log = start(snakemake.log[0], "timing")
benchmarks = read_benchmarks(snakemake.params.folder)
jobs = timing_table(benchmarks, read_logged_peaks(snakemake.params.logs, benchmarks))
steps = timing_by_step(jobs)
write_table(jobs, csv=snakemake.output.csv)
write_table(steps, csv=snakemake.output.steps)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text("## Per step (most time first)\n\n" + to_markdown(steps, digits=1)
                   + "\n## Per job\n\n" + to_markdown(jobs, digits=1), encoding="utf-8")
with atomic_path(snakemake.output.html) as tmp:
    tmp.write_text(html_page([("Per step (most time first)", steps), ("Per job", jobs)], digits=1), encoding="utf-8")
log.info("%d benchmarked jobs, %.0f s in all", len(jobs), jobs["s"].sum() if len(jobs) else 0.0)

finish()
