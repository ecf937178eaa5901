from xmc.ensemble import ensemble
from xmc.io import load_csr, load_json, save_csr
from xmc.runlog import finish, start

log = start(snakemake.log[0], "ensemble")
method, members = snakemake.params.method, list(snakemake.params.members)
paths = dict(zip(members, snakemake.input.preds))
if snakemake.input.selection:  # method auto: the rule and members picked on the validation split
    pick = load_json(snakemake.input.selection[0])
    method, members = pick["method"], pick["members"]
    log.info("picked on validation (P@1 %.2f)", pick["validation"]["P@1"])
log.info("%s split: %s of %s", snakemake.wildcards.split, method, ", ".join(members))
preds = [load_csr(paths[m]) for m in members]
save_csr(snakemake.output[0], ensemble(preds, method, top_k=snakemake.params.top_k))

finish()
