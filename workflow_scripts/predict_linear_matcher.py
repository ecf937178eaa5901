from xmc.data.dataset import SPLITS
from xmc.features import load_ranker_features
from xmc.io import save_csr
from xmc.matcher.linear import LinearMatcher, LinearMatcherPredParams
from xmc.runlog import finish, start

log = start(snakemake.log[0], "predict_linear_matcher")
inp = snakemake.input
matcher = LinearMatcher.load(inp.model)
matcher.n_jobs = snakemake.threads  # beam batches in parallel (a tree matcher)
pred_params = LinearMatcherPredParams(top_b=snakemake.params.top_b)
for split in SPLITS:
    X = load_ranker_features(inp, split)
    topb = matcher.predict(X, pred_params)
    log.info("%s: top-%d clusters of %d instances", split, snakemake.params.top_b, topb.shape[0])
    save_csr(snakemake.output[f"topb_{split}"], topb)

finish()
