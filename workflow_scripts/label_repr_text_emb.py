import numpy as np
import torch

from xmc.devices import assign_gpus
from xmc.hub import resolve_cached
from xmc.io import atomic_path, read_lines
from xmc.label_repr import fill_missing_label_texts, text_embedding
from xmc.runlog import finish, start

log = start(snakemake.log[0], "text-emb")
torch.set_num_threads(snakemake.threads)
names = read_lines(snakemake.input.label_names)
texts, missing = fill_missing_label_texts(read_lines(snakemake.input.label_text), names)
if missing:
    log.warning("%d labels have no text; embedding their names instead (first: %s)", len(missing),
                names[missing[0]])
with assign_gpus(snakemake.resources.gpu, log=log, rule=snakemake.rule):
    Z = text_embedding(texts, resolve_cached(snakemake.params.model), max_length=snakemake.params.max_length,
                       batch_size=snakemake.params.batch_size, device="auto")
log.info("text embeddings %s", Z.shape)
with atomic_path(snakemake.output[0]) as tmp:
    np.savez(tmp, Z=Z)

finish()
