from xmc.features import load_ranker_features
from xmc.io import load_csr
from xmc.matcher.linear import LinearMatcher, LinearMatcherParams
from xmc.indexing import cluster_targets
from xmc.runlog import finish, start

log = start(snakemake.log[0], "train_linear_matcher")
inp = snakemake.input
X = load_ranker_features(inp, "train")  # X_train (phi_tfidf), Xc_train (phi_char) and/or emb_train
M = cluster_targets(load_csr(inp.Y), load_csr(inp.C))
log.info("linear matcher on %s %s -> %d clusters", snakemake.wildcards.get("input", "tfidf"), X.shape, M.shape[1])
params = LinearMatcherParams(C=snakemake.params.C, threshold=snakemake.params.threshold,
                             branching=snakemake.params.branching)
matcher = LinearMatcher.train(X, M, params, n_jobs=snakemake.threads)
matcher.save(snakemake.output[0])

finish()
