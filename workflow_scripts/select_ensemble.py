from xmc.io import load_csr, save_json
from xmc.runlog import finish, start
from xmc.selection import select_ensemble

log = start(snakemake.log[0], "select_ensemble")
preds = {name: load_csr(path) for name, path in zip(snakemake.params.members, snakemake.input.preds)}
pick = select_ensemble(preds, load_csr(snakemake.input.Y), top_k=snakemake.params.top_k)
for c in pick["candidates"][:10]:
    log.info("validation P@1 %.2f P@3 %.2f P@5 %.2f: %s of %s", c["P@1"], c["P@3"], c["P@5"], c["method"],
             ", ".join(c["members"]))
log.info("picked %s of %s (%d candidates tried)", pick["method"], ", ".join(pick["members"]), len(pick["candidates"]))
save_json(snakemake.output[0], pick)

finish()
