from pathlib import Path

from xmc.data.download import fetch
from xmc.runlog import finish, start

log = start(snakemake.log[0], "download")
log.info("fetching %s", snakemake.params.source)
fetch(snakemake.params.source, Path(snakemake.output[0]), sha256=snakemake.params.sha256, **snakemake.params.cap)
log.info("unpacked into %s", snakemake.output[0])

finish()
