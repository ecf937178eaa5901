import numpy as np
import torch

from xmc.aplc import APLC
from xmc.io import save_csr
from xmc.runlog import start

log = start(snakemake.log[0], "predict_aplc")
torch.set_num_threads(snakemake.threads)
model = APLC.load(snakemake.input.model, device=snakemake.params.aplc.get("device", "auto"))
tokens = np.load(snakemake.input.tokens)
pred = model.predict(tokens["input_ids"], tokens["attention_mask"])
log.info("top-%d labels of %d test instances", model.params.top_k, pred.shape[0])
save_csr(snakemake.output[0], pred)
