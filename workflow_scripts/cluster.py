import numpy as np
import scipy.sparse as sp

from xmc.indexing import BalancedKMeans, IndexerParams, default_n_clusters
from xmc.runlog import finish, start

log = start(snakemake.log[0], "cluster")
path = snakemake.input[0]
with np.load(path, allow_pickle=False) as f:
    Z = f["Z"] if "Z" in f.files else None
if Z is None:
    Z = sp.load_npz(path).tocsr()
n_labels = Z.shape[0]
K = snakemake.params.n_clusters or default_n_clusters(n_labels)
if K > n_labels:  # on a first run (later runs check at start-up, from the prepared data)
    ds = snakemake.wildcards.dataset
    raise ValueError(f"K = {K} clusters ({'set by' if snakemake.params.n_clusters else 'the depth rule; set'} "
                     f"datasets.{ds}.n_clusters or indexing.n_clusters) is larger than the number of labels "
                     f"({n_labels}) of dataset {ds}" + ("; a dataset needs at least 2 labels" if n_labels < 2 else ""))
log.info("clustering %d labels into K=%d clusters (%s)", n_labels, K,
         "from config" if snakemake.params.n_clusters else "depth rule")
params = IndexerParams(n_clusters=K, max_iter=snakemake.params.max_iter, seed=snakemake.params.seed)
model = BalancedKMeans.train(Z, params, n_jobs=snakemake.threads)
sizes = np.bincount(model.assignment_, minlength=K)
log.info("cluster sizes: min %d, max %d", sizes.min(), sizes.max())
model.save(snakemake.output[0])

finish()
