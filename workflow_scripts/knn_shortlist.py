import numpy as np

from xmc.data.dataset import SPLITS
from xmc.indexing import cluster_targets
from xmc.io import load_csr, save_csr
from xmc.matcher.knn import knn_embedding, knn_shortlist
from xmc.runlog import finish, start

log = start(snakemake.log[0], "knn_shortlist")
inp, knn, top_b = snakemake.input, snakemake.params.knn, snakemake.params.top_b
pretrained_weight = knn.get("pretrained_weight", 0.0)


def embedding(split):
    """The split's documents in the space the neighbours are sought in."""
    return knn_embedding(np.load(inp[f"emb_{split}"]), np.load(inp[f"pre_{split}"]) if pretrained_weight else None,
                         pretrained_weight)


memory = embedding("train")
memory_clusters = cluster_targets(load_csr(inp.Y_train), load_csr(inp.C))  # what each neighbour votes for
for split in SPLITS:
    queries = memory if split == "train" else embedding(split)
    topb = knn_shortlist(queries, memory, memory_clusters, top_b, k=knn["k"], power=knn["power"],
                         head=load_csr(inp[f"head_{split}"]), head_weight=knn["head_weight"],
                         exclude_self=split == "train")
    log.info("%s: top-%d clusters of %d documents by the votes of the %d nearest training documents "
             "(power %s, head weight %s, pretrained encoder's share of the similarity %s%s)", split,
             top_b, topb.shape[0], knn["k"], knn["power"], knn["head_weight"], pretrained_weight,
             ", leave-one-out" if split == "train" else "")
    save_csr(snakemake.output[f"topb_{split}"], topb)

finish()
