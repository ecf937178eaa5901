import torch

from xmc.data.dataset import SPLITS
from xmc.devices import assign_gpus
from xmc.hub import resolve_cached
from xmc.io import read_lines, save_npy
from xmc.label_repr import text_embedding
from xmc.runlog import finish, start

log = start(snakemake.log[0], "embed_pretrained")
log.info("precision %s", snakemake.params.precision)
torch.set_num_threads(snakemake.threads)
encoder = resolve_cached(snakemake.params.model)
with assign_gpus(snakemake.resources.gpu, log=log, rule=snakemake.rule):
    for split in SPLITS:
        emb = text_embedding(read_lines(snakemake.input[split]), encoder, max_length=snakemake.params.max_length,
                             batch_size=snakemake.params.batch_size, device="auto",
                             precision=snakemake.params.precision)
        log.info("%s: phi_pre %s", split, emb.shape)
        save_npy(snakemake.output[f"emb_{split}"], emb)

finish()
