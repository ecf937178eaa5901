from xmc.io import load_json
from xmc.runlog import start
from xmc.tables import results_table, write_table

log = start(snakemake.log[0], "tables")
table = results_table([load_json(path) for path in snakemake.input])
write_table(table, csv=snakemake.output.csv, markdown=snakemake.output.md)
log.info("%d rows", len(table))
