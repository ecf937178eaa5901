from xmc.figures import precision_at_k_figure, save_figure
from xmc.io import load_json
from xmc.runlog import finish, start
from xmc.tables import keep_test_split, results_table

log = start(snakemake.log[0], "figure_precision_at_k")
params = snakemake.params
# the figure shows the test split only
metrics = results_table(keep_test_split([load_json(path) for path in snakemake.input]))
fig = precision_at_k_figure(metrics, labels=params.labels, groups=params.groups, marks=params.marks,
                            title=f"{snakemake.wildcards.dataset}: P@1, P@3, P@5 per model, test split "
                                  f"({len(metrics)} models)")
save_figure(fig, png=snakemake.output.png, pdf=snakemake.output.pdf)
log.info("%d models", len(metrics))

finish()
