from xmc.io import load_csr, load_npy
from xmc.matcher.linear import LinearMatcher
from xmc.features import ranker_features
from xmc.indexing import cluster_targets
from xmc.runlog import finish, start

log = start(snakemake.log[0], "train_linear_matcher")
inp = snakemake.input
# phi_tfidf (input X or X_train), phi_pre (emb_train alone) or phi_fnt (+) phi_tfidf (both)
tfidf = inp.X if "X" in inp.keys() else inp.X_train if "X_train" in inp.keys() else None
X = ranker_features(load_csr(tfidf) if tfidf else None,
                    load_npy(inp.emb_train) if "emb_train" in inp.keys() else None)
M = cluster_targets(load_csr(inp.Y), load_csr(inp.C))
log.info("linear matcher on %s %s -> %d clusters", snakemake.wildcards.get("input", "tfidf"), X.shape, M.shape[1])
matcher = LinearMatcher(C=snakemake.params.C, threshold=snakemake.params.threshold,
                        branching=snakemake.params.branching, n_jobs=snakemake.threads).fit(X, M)
matcher.save(snakemake.output[0])

finish()
