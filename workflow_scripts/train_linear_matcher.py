from xmc.io import load_csr, load_ranker_features
from xmc.matcher.linear import LinearMatcher
from xmc.indexing import cluster_targets
from xmc.runlog import finish, start

log = start(snakemake.log[0], "train_linear_matcher")
inp = snakemake.input
X = load_ranker_features(inp, "train")  # X_train (phi_tfidf), Xc_train (phi_char) and/or emb_train
M = cluster_targets(load_csr(inp.Y), load_csr(inp.C))
log.info("linear matcher on %s %s -> %d clusters", snakemake.wildcards.get("input", "tfidf"), X.shape, M.shape[1])
matcher = LinearMatcher(C=snakemake.params.C, threshold=snakemake.params.threshold,
                        branching=snakemake.params.branching, n_jobs=snakemake.threads).fit(X, M)
matcher.save(snakemake.output[0])

finish()
