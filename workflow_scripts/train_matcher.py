from pathlib import Path

import torch

from xmc.devices import assign_gpus
from xmc.hub import resolve_cached
from xmc.matcher.launch import train_and_save
from xmc.runlog import finish, start

log = start(snakemake.log[0], "train_matcher")
torch.set_num_threads(snakemake.threads)
inp = snakemake.input
# Beside the output, not inside it: Snakemake deletes the outputs of a killed job, and a rerun
# resumes from this folder.
checkpoint_dir = Path(snakemake.output[0]).parent / "checkpoint"
with assign_gpus(snakemake.resources.gpu, log=log, rule=snakemake.rule) as gpus:
    train_and_save(len(gpus), resolve_cached(snakemake.params.model), inp.tokens, inp.Y, inp.C,
                   snakemake.params.matcher, snakemake.output[0], checkpoint_dir, log.info,
                   init_emb=inp.get("init_emb"))

finish()
