import pickle

from xmc.features import TfidfParams, fit_tfidf, transform_tfidf
from xmc.io import atomic_path, read_lines, save_csr
from xmc.runlog import finish, start

log = start(snakemake.log[0], "tfidf")
params = TfidfParams.from_dict(snakemake.params.tfidf)
vectorizer, X_train = fit_tfidf(read_lines(snakemake.input.train), params)
log.info("train %s, %d non-zeros (fit on train only)", X_train.shape, X_train.nnz)
save_csr(snakemake.output.X_train, X_train)
for split in ("valid", "test"):
    X = transform_tfidf(vectorizer, read_lines(snakemake.input[split]))
    log.info("%s %s", split, X.shape)
    save_csr(snakemake.output[f"X_{split}"], X)
with atomic_path(snakemake.output.vectorizer) as tmp, open(tmp, "wb") as f:
    pickle.dump(vectorizer, f)

finish()
