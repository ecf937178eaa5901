from xmc.features import load_ranker_features
from xmc.io import load_csr
from xmc.ranker import Ranker, RankerParams, shard_clusters
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
params = RankerParams.from_dict({"negatives": snakemake.wildcards.negatives, **snakemake.params.ranker})
M_train = load_csr(inp.M_train) if "M_train" in inp.keys() else None  # MAN negatives only
ranker = Ranker.train(X, load_csr(inp.Y), C, M_train, params, n_jobs=snakemake.threads, clusters=clusters)
log.info("%d non-zero weights", ranker.W_.nnz)
ranker.save(snakemake.output[0])

finish()
