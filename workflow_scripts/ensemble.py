from xmc.ensemble import ensemble
from xmc.io import load_csr, save_csr
from xmc.runlog import finish, start

log = start(snakemake.log[0], "ensemble")
log.info("%s of %s", snakemake.params.method, ", ".join(snakemake.params.members))
preds = [load_csr(path) for path in snakemake.input]
save_csr(snakemake.output[0], ensemble(preds, snakemake.params.method, top_k=snakemake.params.top_k))

finish()
