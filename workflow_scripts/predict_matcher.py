from pathlib import Path

import numpy as np
import torch

from xmc.data.dataset import SPLITS
from xmc.devices import assign_gpus
from xmc.io import save_csr, save_npy
from xmc.matcher.transformer import TransformerMatcher
from xmc.resumable import file_stamp, matcher_predictions
from xmc.runlog import finish, start

log = start(snakemake.log[0], "predict_matcher")
torch.set_num_threads(snakemake.threads)
with assign_gpus(snakemake.resources.gpu, log=log, rule=snakemake.rule):
    matcher = TransformerMatcher.load(snakemake.input.model, device=snakemake.params.matcher.get("device", "auto"))
    # the saved matcher's prediction settings, with this config's
    pred_params = matcher.params.pred_params().with_overrides(
        top_b=snakemake.params.top_b, batch_size=snakemake.params.matcher.get("eval_batch_size", 64),
        precision=snakemake.params.matcher.get("predict_precision"))
    model_stamp = file_stamp(snakemake.input.model)
    for split in SPLITS:
        tokens = np.load(snakemake.input[f"tokens_{split}"])
        # In resumable chunks: a job killed at its time limit keeps the chunks it finished.
        topb, emb = matcher_predictions(
            matcher, tokens["input_ids"], tokens["attention_mask"],
            Path(snakemake.output[f"topb_{split}"]).parent / f".predict-{split}.chunks",
            {"model": model_stamp, "tokens": file_stamp(snakemake.input[f"tokens_{split}"]),
             "matcher": dict(snakemake.params.matcher)},
            pred_params, log=log.info)
        log.info("%s: top-%d clusters of %d instances, embeddings %s", split, snakemake.params.top_b,
                 topb.shape[0], emb.shape)
        save_csr(snakemake.output[f"topb_{split}"], topb)
        save_npy(snakemake.output[f"emb_{split}"], emb.astype(np.float32))

finish()
