import shutil
from pathlib import Path

import numpy as np
import torch

from xmc.encoders import resolve_encoder
from xmc.io import load_csr
from xmc.matcher.transformer import MatcherParams, TransformerMatcher
from xmc.ranker import cluster_targets
from xmc.runlog import start

log = start(snakemake.log[0], "train_matcher")
torch.set_num_threads(snakemake.threads)
params = MatcherParams.from_dict(snakemake.params.matcher)
tokens = np.load(snakemake.input.tokens)
M = cluster_targets(load_csr(snakemake.input.Y), load_csr(snakemake.input.C))
# Beside the output, not inside it: Snakemake deletes the outputs of a killed job, and a rerun
# resumes from this folder.
checkpoint_dir = Path(snakemake.output[0]).parent / "checkpoint"
log.info("fine-tuning %s on %d instances x %d clusters (checkpoints in %s): %s", snakemake.params.model,
         M.shape[0], M.shape[1], checkpoint_dir, params)
matcher = TransformerMatcher.train(resolve_encoder(snakemake.params.model), tokens["input_ids"],
                                   tokens["attention_mask"], M, params, log=log.info,
                                   checkpoint_dir=checkpoint_dir)
matcher.save(snakemake.output[0])
shutil.rmtree(checkpoint_dir, ignore_errors=True)
