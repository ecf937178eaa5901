from xmc.figures import precision_at_k_figure, save_figure
from xmc.io import load_json
from xmc.runlog import finish, start
from xmc.tables import results_table

log = start(snakemake.log[0], "figure_precision_at_k")
metrics = results_table([load_json(path) for path in snakemake.input])
fig = precision_at_k_figure(metrics, labels=snakemake.params.labels,
                            title=f"{snakemake.wildcards.dataset}: P@k per configuration")
save_figure(fig, png=snakemake.output.png, pdf=snakemake.output.pdf)
log.info("%d models", len(metrics))

finish()
