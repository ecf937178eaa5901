from xmc.io import load_csr, load_npy
from xmc.ranker import Ranker, ranker_features
from xmc.runlog import start

log = start(snakemake.log[0], "train_ranker")
inp = snakemake.input
emb = load_npy(inp.emb_train) if "emb_train" in inp.keys() else None
X = ranker_features(load_csr(inp.X_train) if "X_train" in inp.keys() else None, emb)  # None: phi_pre
log.info("ranker input %s (%s), negatives %s", X.shape, snakemake.wildcards.input, snakemake.wildcards.negatives)
ranker = Ranker(negatives=snakemake.wildcards.negatives, n_jobs=snakemake.threads, **snakemake.params.ranker)
ranker.fit(X, load_csr(inp.Y), load_csr(inp.C), load_csr(inp.M_train))
log.info("%d non-zero weights", ranker.W_.nnz)
ranker.save(snakemake.output[0])
