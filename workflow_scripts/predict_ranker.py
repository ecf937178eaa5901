from xmc.io import load_csr, load_npy, save_csr
from xmc.features import ranker_features
from xmc.ranker import Ranker
from xmc.runlog import finish, start

log = start(snakemake.log[0], "predict_ranker")
inp = snakemake.input
emb = load_npy(inp.emb_test) if "emb_test" in inp.keys() else None
X = ranker_features(load_csr(inp.X_test) if "X_test" in inp.keys() else None, emb)  # None: phi_pre
ranker = Ranker.load(inp.model)
pred = ranker.predict(X, load_csr(inp.M_test), combine=snakemake.wildcards.combine, top_k=snakemake.params.top_k)
log.info("top-%d predictions for %d test instances (combination %s)", snakemake.params.top_k, pred.shape[0],
         snakemake.wildcards.combine)
save_csr(snakemake.output[0], pred)

finish()
