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
X_test = transform_tfidf(vectorizer, read_lines(snakemake.input.test))
log.info("train %s, test %s, %d non-zeros in train", X_train.shape, X_test.shape, X_train.nnz)
save_csr(snakemake.output.X_train, X_train)
save_csr(snakemake.output.X_test, X_test)
save_vectorizer(vectorizer, snakemake.output.vectorizer)  # as data: no pickle

finish()
