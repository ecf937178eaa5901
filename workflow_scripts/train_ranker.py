from xmc.io import load_csr, load_ranker_features
from xmc.ranker import Ranker, shard_clusters
from xmc.runlog import finish, start

log = start(snakemake.log[0], "train_ranker")
inp = snakemake.input
X = load_ranker_features(inp, "train")
log.info("ranker input %s (%s), negatives %s", X.shape, snakemake.wildcards.input, snakemake.wildcards.negatives)
C = load_csr(inp.C)
clusters = None
if snakemake.params.shard is not None:
    shard, n_shards = snakemake.params.shard
    if n_shards > C.shape[1]:  # K from the depth rule, on a first run (later runs check at start-up)
        raise ValueError(f"ranker.shards = {n_shards} is larger than the K = {C.shape[1]} clusters of "
                         f"dataset {snakemake.wildcards.dataset}; lower ranker.shards")
    clusters = shard_clusters(C.shape[1], n_shards, shard)
    log.info("shard %d of %d: clusters %d..%d of %d", shard, n_shards, clusters[0], clusters[-1], C.shape[1])
ranker = Ranker(negatives=snakemake.wildcards.negatives, n_jobs=snakemake.threads, **snakemake.params.ranker)
M_train = load_csr(inp.M_train) if "M_train" in inp.keys() else None  # MAN negatives only
ranker.fit(X, load_csr(inp.Y), C, M_train, clusters=clusters)
log.info("%d non-zero weights", ranker.W_.nnz)
ranker.save(snakemake.output[0])

finish()
