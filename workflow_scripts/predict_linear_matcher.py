from xmc.io import load_csr, save_csr
from xmc.matcher.linear import LinearMatcher
from xmc.runlog import start

log = start(snakemake.log[0], "predict_linear_matcher")
matcher = LinearMatcher.load(snakemake.input.model)
for split in ("train", "test"):
    topb = matcher.predict(load_csr(snakemake.input[f"X_{split}"]), top_b=snakemake.params.top_b)
    log.info("%s: top-%d clusters of %d instances", split, snakemake.params.top_b, topb.shape[0])
    save_csr(snakemake.output[f"topb_{split}"], topb)
