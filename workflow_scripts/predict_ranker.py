from xmc.features import load_ranker_features
from xmc.io import load_csr, save_csr
from xmc.ranker import Ranker, RankerPredParams
from xmc.runlog import finish, start

log = start(snakemake.log[0], "predict_ranker")
inp = snakemake.input
split = snakemake.wildcards.split
X = load_ranker_features(inp, split)
ranker = Ranker.load(inp.model)
pred_params = RankerPredParams(combine=snakemake.wildcards.combine, top_k=snakemake.params.top_k)
pred = ranker.predict(X, load_csr(inp[f"M_{split}"]), pred_params)
log.info("top-%d predictions for %d %s instances (combination %s)", snakemake.params.top_k, pred.shape[0], split,
         snakemake.wildcards.combine)
save_csr(snakemake.output[0], pred)

finish()
