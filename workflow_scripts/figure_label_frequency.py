from xmc.figures import label_frequencies, label_frequency_figure, save_figure
from xmc.io import load_csr
from xmc.runlog import finish, start

log = start(snakemake.log[0], "figure_label_frequency")
freq = label_frequencies(load_csr(snakemake.input[0]))
fig = label_frequency_figure(freq, title=f"{snakemake.wildcards.dataset}: label frequency (train)")
save_figure(fig, png=snakemake.output.png, pdf=snakemake.output.pdf)
log.info("%d labels, max %d, median %.0f instances", len(freq), freq[0], float(freq[len(freq) // 2]))

finish()
