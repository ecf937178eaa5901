from xmc.io import load_csr
from xmc.matcher.linear import LinearMatcher
from xmc.ranker import cluster_targets
from xmc.runlog import start

log = start(snakemake.log[0], "train_linear_matcher")
X = load_csr(snakemake.input.X)
M = cluster_targets(load_csr(snakemake.input.Y), load_csr(snakemake.input.C))
log.info("linear matcher on TF-IDF %s -> %d clusters", X.shape, M.shape[1])
matcher = LinearMatcher(C=snakemake.params.C, threshold=snakemake.params.threshold).fit(X, M)
matcher.save(snakemake.output[0])
