from xmc.figures import cluster_size_figure, cluster_sizes, save_figure
from xmc.io import load_csr
from xmc.runlog import finish, start

log = start(snakemake.log[0], "figure_cluster_sizes")
Y = load_csr(snakemake.input.Y)
sizes = {ix: cluster_sizes(load_csr(path), Y) for ix, path in zip(snakemake.params.indexers, snakemake.input.C)}
fig = cluster_size_figure(sizes, title=f"{snakemake.wildcards.dataset}: cluster sizes per indexer")
save_figure(fig, png=snakemake.output.png, pdf=snakemake.output.pdf)
for ix, (labels, instances) in sizes.items():
    log.info("%s: K=%d, labels per cluster %d-%d, instances per cluster %d-%d",
             ix, len(labels), labels.min(), labels.max(), instances.min(), instances.max())

finish()
