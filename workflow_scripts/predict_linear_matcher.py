from xmc.io import load_csr, load_npy, save_csr
from xmc.matcher.linear import LinearMatcher
from xmc.features import ranker_features
from xmc.runlog import finish, start

log = start(snakemake.log[0], "predict_linear_matcher")
inp = snakemake.input
matcher = LinearMatcher.load(inp.model)
matcher.n_jobs = snakemake.threads  # beam batches in parallel (a tree matcher)
for split in ("train", "test"):
    X = ranker_features(load_csr(inp[f"X_{split}"]) if f"X_{split}" in inp.keys() else None,
                        load_npy(inp[f"emb_{split}"]) if f"emb_{split}" in inp.keys() else None)
    topb = matcher.predict(X, top_b=snakemake.params.top_b)
    log.info("%s: top-%d clusters of %d instances", split, snakemake.params.top_b, topb.shape[0])
    save_csr(snakemake.output[f"topb_{split}"], topb)

finish()
