from pathlib import Path

from xmc.data.readers import read_dataset
from xmc.runlog import finish, start

log = start(snakemake.log[0], "prepare")
dataset = read_dataset(snakemake.params.format, Path(snakemake.input[0]), **snakemake.params.options)
if snakemake.params.subsample:  # a reduced grid: a seeded random subset of the documents
    dataset = dataset.subsample(**snakemake.params.subsample)
    log.info("subsample %s", snakemake.params.subsample)
dataset.save(Path(snakemake.output.meta).parent)
log.info("%d train / %d test texts, %d labels", len(dataset.train_texts), len(dataset.test_texts),
         len(dataset.label_names))

finish()
