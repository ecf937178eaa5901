from xmc.ranker import Ranker
from xmc.runlog import finish, start

log = start(snakemake.log[0], "merge_ranker")
ranker = Ranker.merge([Ranker.load(path) for path in snakemake.input])
log.info("merged %d shards: %d non-zero weights for %d labels", len(snakemake.input), ranker.W_.nnz,
         ranker.W_.shape[0])
ranker.save(snakemake.output[0])

finish()
