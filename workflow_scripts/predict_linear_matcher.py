from xmc.data.dataset import SPLITS
from xmc.io import load_ranker_features, save_csr
from xmc.matcher.linear import LinearMatcher
from xmc.runlog import finish, start

log = start(snakemake.log[0], "predict_linear_matcher")
inp = snakemake.input
matcher = LinearMatcher.load(inp.model)
matcher.n_jobs = snakemake.threads  # beam batches in parallel (a tree matcher)
for split in SPLITS:
    X = load_ranker_features(inp, split)
    topb = matcher.predict(X, top_b=snakemake.params.top_b)
    log.info("%s: top-%d clusters of %d instances", split, snakemake.params.top_b, topb.shape[0])
    save_csr(snakemake.output[f"topb_{split}"], topb)

finish()
