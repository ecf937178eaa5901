import numpy as np
import torch

from xmc.aplc import APLC, APLCParams
from xmc.devices import assign_gpus
from xmc.encoders import resolve_encoder
from xmc.io import load_csr
from xmc.runlog import start

log = start(snakemake.log[0], "train_aplc")
torch.set_num_threads(snakemake.threads)
params = APLCParams.from_dict(snakemake.params.aplc)
tokens = np.load(snakemake.input.tokens)
Y = load_csr(snakemake.input.Y)
log.info("APLC: %s on %d instances x %d labels: %s", snakemake.params.model, Y.shape[0], Y.shape[1], params)
with assign_gpus(snakemake.resources.gpu, log=log, rule=snakemake.rule):
    model = APLC(params).fit(resolve_encoder(snakemake.params.model), tokens["input_ids"], tokens["attention_mask"],
                             Y, log=log.info)
log.info("trained in %.1f s", model.train_seconds_)
model.save(snakemake.output[0])
