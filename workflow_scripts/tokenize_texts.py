import numpy as np

from xmc.hub import resolve_cached
from xmc.features import tokenize
from xmc.io import atomic_path, read_lines
from xmc.runlog import finish, start

log = start(snakemake.log[0], "tokenize")
encoder_dir = resolve_cached(snakemake.params.model)
texts = read_lines(snakemake.input[0])
tokens = tokenize(texts, encoder_dir, max_length=snakemake.params.max_length)
log.info("%d texts -> %s token ids", len(texts), tokens["input_ids"].shape)
with atomic_path(snakemake.output[0]) as tmp:
    np.savez(tmp, **tokens)

finish()
