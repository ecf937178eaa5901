import numpy as np

from xmc.data.dataset import SPLITS
from xmc.indexing import cluster_targets
from xmc.io import load_csr, save_csr
from xmc.matcher.knn import knn_shortlist
from xmc.runlog import finish, start

log = start(snakemake.log[0], "knn_shortlist")
inp, knn, top_b = snakemake.input, snakemake.params.knn, snakemake.params.top_b
memory = np.load(inp.emb_train)
memory_clusters = cluster_targets(load_csr(inp.Y_train), load_csr(inp.C))  # what each neighbour votes for
for split in SPLITS:
    topb = knn_shortlist(np.load(inp[f"emb_{split}"]), memory, memory_clusters, top_b, k=knn["k"],
                         power=knn["power"], head=load_csr(inp[f"head_{split}"]), head_weight=knn["head_weight"],
                         exclude_self=split == "train")
    log.info("%s: top-%d clusters of %d documents by the votes of the %d nearest training documents "
             "(power %s, head weight %s%s)", split, top_b, topb.shape[0], knn["k"], knn["power"],
             knn["head_weight"], ", leave-one-out" if split == "train" else "")
    save_csr(snakemake.output[f"topb_{split}"], topb)

finish()
