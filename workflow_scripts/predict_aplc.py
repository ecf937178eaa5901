import numpy as np
import torch

from xmc.aplc import APLC
from xmc.devices import assign_gpus
from xmc.io import save_csr
from xmc.runlog import finish, start

log = start(snakemake.log[0], "predict_aplc")
torch.set_num_threads(snakemake.threads)
tokens = np.load(snakemake.input.tokens)
with assign_gpus(snakemake.resources.gpu, log=log, rule=snakemake.rule):
    model = APLC.load(snakemake.input.model, device=snakemake.params.aplc.get("device", "auto"))
    pred = model.predict(tokens["input_ids"], tokens["attention_mask"])
log.info("top-%d labels of %d %s instances", model.params.top_k, pred.shape[0], snakemake.wildcards.split)
save_csr(snakemake.output[0], pred)

finish()
