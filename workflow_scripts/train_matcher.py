import shutil
import subprocess
import sys
from pathlib import Path

import torch

from xmc.devices import assign_gpus
from xmc.encoders import resolve_encoder
from xmc.matcher.launch import arguments, torchrun_command, train_from_files
from xmc.runlog import start

log = start(snakemake.log[0], "train_matcher")
torch.set_num_threads(snakemake.threads)
inp = snakemake.input
# Beside the output, not inside it: Snakemake deletes the outputs of a killed job, and a rerun
# resumes from this folder.
checkpoint_dir = Path(snakemake.output[0]).parent / "checkpoint"
encoder = resolve_encoder(snakemake.params.model)
with assign_gpus(snakemake.resources.gpu, log=log, rule=snakemake.rule) as gpus:
    if len(gpus) > 1:  # data-parallel: one process per device, rank 0 writes the model
        cmd = torchrun_command(len(gpus), arguments(encoder, inp.tokens, inp.Y, inp.C, snakemake.params.matcher,
                                                    snakemake.output[0], checkpoint_dir))
        log.info("launching %s", " ".join(cmd))
        sys.stderr.flush()
        done = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
        if done.returncode != 0:
            raise SystemExit(f"data-parallel matcher training failed (exit status {done.returncode}); "
                             "see the rank logs above")
    else:
        matcher = train_from_files(encoder, inp.tokens, inp.Y, inp.C, snakemake.params.matcher, checkpoint_dir,
                                   log=log.info)
        matcher.save(snakemake.output[0])
shutil.rmtree(checkpoint_dir, ignore_errors=True)
