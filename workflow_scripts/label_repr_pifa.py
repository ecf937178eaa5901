import numpy as np
import scipy.sparse as sp

from xmc.io import atomic_path, load_csr
from xmc.label_repr import pifa
from xmc.runlog import start

log = start(snakemake.log[0], "pifa")
Y = load_csr(snakemake.input.Y)
X = load_csr(snakemake.input.X) if snakemake.input.X.endswith(".npz") else np.load(snakemake.input.X)
Z = pifa(Y, X)
log.info("PIFA label representation %s from features %s", Z.shape, X.shape)
with atomic_path(snakemake.output[0]) as tmp:
    if sp.issparse(Z):
        sp.save_npz(tmp, Z.tocsr())
    else:
        np.savez(tmp, Z=Z)
