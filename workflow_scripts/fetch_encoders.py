from xmc.hub import hub_ids, prefetch
from xmc.io import save_json
from xmc.runlog import finish, start

log = start(snakemake.log[0], "fetch_encoders")
ids = hub_ids(snakemake.params.models)
log.info("hub encoders: %s (local folders and packaged models need nothing)", ", ".join(ids) or "none")
folders = prefetch(ids, log.info)
save_json(snakemake.output[0], folders)

finish()
