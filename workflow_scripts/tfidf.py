from xmc.features import TfidfParams, fit_tfidf, tokenization_warning, transform_tfidf
from xmc.io import read_lines, save_csr
from xmc.runlog import finish, start
from xmc.vectorizer_store import save_vectorizer

log = start(snakemake.log[0], "tfidf")
params = TfidfParams.from_dict(snakemake.params.tfidf)
train = read_lines(snakemake.input.train)
warning = tokenization_warning(train, params)
if warning:
    log.warning(warning)
vectorizer, X_train = fit_tfidf(train, params)
log.info("train %s, %d non-zeros (fit on train only)", X_train.shape, X_train.nnz)
save_csr(snakemake.output.X_train, X_train)
for split in ("valid", "test"):
    X = transform_tfidf(vectorizer, read_lines(snakemake.input[split]))
    log.info("%s %s", split, X.shape)
    save_csr(snakemake.output[f"X_{split}"], X)
save_vectorizer(vectorizer, snakemake.output.vectorizer)  # as data: no pickle

finish()
