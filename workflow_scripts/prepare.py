from pathlib import Path

from xmc.data.readers import read_dataset
from xmc.runlog import finish, start

log = start(snakemake.log[0], "prepare")
dataset = read_dataset(snakemake.params.format, Path(snakemake.input[0]), **snakemake.params.options)
if snakemake.params.subsample:  # a reduced grid: a seeded random subset of the documents
    dataset = dataset.subsample(**snakemake.params.subsample)
    log.info("subsample %s", snakemake.params.subsample)
if dataset.valid_texts:
    log.info("validation split: the data's own")
else:  # held out of train: models never see it, every choice is made on it
    dataset = dataset.hold_out_validation(**snakemake.params.validation)
    log.info("validation split: %s of the training documents held out (seed %d)",
             snakemake.params.validation["fraction"], snakemake.params.validation["seed"])
dataset.save(Path(snakemake.output.meta).parent)
log.info("%d train / %d valid / %d test texts, %d labels", len(dataset.train_texts), len(dataset.valid_texts),
         len(dataset.test_texts), len(dataset.label_names))

finish()
