import pickle

from xmc.features import TfidfParams, fit_tfidf, transform_tfidf
from xmc.io import atomic_path, read_lines, save_csr
from xmc.runlog import finish, start

log = start(snakemake.log[0], "tfidf")
params = TfidfParams.from_dict(snakemake.params.tfidf)
vectorizer, X_train = fit_tfidf(read_lines(snakemake.input.train), params)
X_test = transform_tfidf(vectorizer, read_lines(snakemake.input.test))
log.info("train %s, test %s, %d non-zeros in train", X_train.shape, X_test.shape, X_train.nnz)
save_csr(snakemake.output.X_train, X_train)
save_csr(snakemake.output.X_test, X_test)
with atomic_path(snakemake.output.vectorizer) as tmp, open(tmp, "wb") as f:
    pickle.dump(vectorizer, f)

finish()
