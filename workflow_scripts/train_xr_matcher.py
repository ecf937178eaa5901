import numpy as np
import torch

from xmc.devices import assign_gpus
from xmc.encoders import resolve_encoder
from xmc.io import load_csr
from xmc.matcher.transformer import MatcherParams
from xmc.matcher.xr import XRParams, train_xr_matcher
from xmc.runlog import start

log = start(snakemake.log[0], "train_xr_matcher")
torch.set_num_threads(snakemake.threads)
params = MatcherParams.from_dict(snakemake.params.matcher)
xr = XRParams.from_dict(snakemake.params.xr)
tokens = np.load(snakemake.input.tokens)
Y, C = load_csr(snakemake.input.Y), load_csr(snakemake.input.C)
if np.any(np.diff(C.indptr) != 1):
    raise ValueError(f"{snakemake.input.C}: every label needs exactly one cluster")
log.info("XR-Transformer: %s on %d instances, K = %d: %s, %s", snakemake.params.model, Y.shape[0], C.shape[1],
         params, xr)
with assign_gpus(snakemake.resources.gpu, log=log, rule=snakemake.rule):
    matcher = train_xr_matcher(resolve_encoder(snakemake.params.model), tokens["input_ids"],
                               tokens["attention_mask"], Y, C.indices, C.shape[1], params, xr, log=log.info)
for level in matcher.xr_levels_:
    log.info("level K_t = %(level)d: %(steps)d steps in %(seconds).1f s, %(candidates).1f candidates per instance",
             level)
matcher.save(snakemake.output[0])
