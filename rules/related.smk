# The related systems as extra rows of the grid: XR-Transformer (a matcher, then our rankers) and
# APLC-XLNet (end to end). Enabled per encoder by xr_transformer.encoders and aplc.encoders.
XR = f"{R}/{{dataset}}/matcher/{{indexer}}/{xmc_config.XR_MATCHER_PREFIX}{{encoder}}"
APLC = f"{R}/{{dataset}}/aplc/{{encoder}}"


rule train_xr_matcher:
    """XR-Transformer: fine-tune the encoder coarse to fine over the indexer's tree read at several
    resolutions, with each level's negatives from the previous level's top-k clusters.
    Checkpoints and resume as train_matcher ({XR}/checkpoint)."""
    input:
        tokens=f"{R}/{{dataset}}/tokens/{{encoder}}/train.npz",
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
        C=f"{R}/{{dataset}}/indexer/{{indexer}}/C.npz",
    output:
        directory(f"{XR}/model"),
    log:
        f"{R}/logs/{{dataset}}/train_xr_matcher.{{indexer}}.{{encoder}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train_xr_matcher.{{indexer}}.{{encoder}}.tsv"
    params:
        model=encoder_model,
        matcher=matcher_params,
        xr=xmc_config.xr_params(CFG),
        code=code_version("train_xr_matcher.py"),
    threads: gpu_threads(MATCHER_GPUS)
    resources:
        gpu=MATCHER_GPUS,  # > 1: data-parallel, as train_matcher
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/train_xr_matcher.py"


use rule predict_matcher as predict_xr_matcher with:
    input:
        model=f"{XR}/model",
        tokens_train=f"{R}/{{dataset}}/tokens/{{encoder}}/train.npz",
        tokens_valid=f"{R}/{{dataset}}/tokens/{{encoder}}/valid.npz",
        tokens_test=f"{R}/{{dataset}}/tokens/{{encoder}}/test.npz",
    output:
        topb_train=f"{XR}/topb.train.npz",
        topb_valid=f"{XR}/topb.valid.npz",
        topb_test=f"{XR}/topb.test.npz",
        emb_train=f"{XR}/emb.train.npy",
        emb_valid=f"{XR}/emb.valid.npy",
        emb_test=f"{XR}/emb.test.npy",
    log:
        f"{R}/logs/{{dataset}}/predict_xr_matcher.{{indexer}}.{{encoder}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/predict_xr_matcher.{{indexer}}.{{encoder}}.tsv"


# XR-Transformer's final matcher (PECOS's concat model, `xr_transformer.shortlist: linear`): the linear
# tree over [TF-IDF ; the fine-tuned embedding]; its top-b clusters give the rankers their MAN
# negatives and prediction shortlist.
use rule train_linear_matcher_features as train_xr_shortlist with:
    input:
        X_train=f"{R}/{{dataset}}/tfidf/X.train.npz",
        emb_train=f"{XR}/emb.train.npy",
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
        C=f"{R}/{{dataset}}/indexer/{{indexer}}/C.npz",
    output:
        f"{XR}/shortlist/model.npz",
    log:
        f"{R}/logs/{{dataset}}/train_xr_shortlist.{{indexer}}.{{encoder}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train_xr_shortlist.{{indexer}}.{{encoder}}.tsv"


use rule predict_linear_matcher_features as predict_xr_shortlist with:
    input:
        model=f"{XR}/shortlist/model.npz",
        X_train=f"{R}/{{dataset}}/tfidf/X.train.npz",
        X_valid=f"{R}/{{dataset}}/tfidf/X.valid.npz",
        X_test=f"{R}/{{dataset}}/tfidf/X.test.npz",
        emb_train=f"{XR}/emb.train.npy",
        emb_valid=f"{XR}/emb.valid.npy",
        emb_test=f"{XR}/emb.test.npy",
    output:
        topb_train=f"{XR}/shortlist/topb.train.npz",
        topb_valid=f"{XR}/shortlist/topb.valid.npz",
        topb_test=f"{XR}/shortlist/topb.test.npz",
    log:
        f"{R}/logs/{{dataset}}/predict_xr_shortlist.{{indexer}}.{{encoder}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/predict_xr_shortlist.{{indexer}}.{{encoder}}.tsv"
    params:
        top_b=matcher_top_b,
        code=code_version("predict_linear_matcher.py"),


rule train_aplc:
    """APLC-XLNet: encoder -> hidden layer -> adaptive probabilistic label clusters, end to end.
    Checkpoints and resume as train_matcher ({APLC}/checkpoint)."""
    input:
        tokens=f"{R}/{{dataset}}/tokens/{{encoder}}/train.npz",
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
    output:
        directory(f"{APLC}/model"),
    log:
        f"{R}/logs/{{dataset}}/train_aplc.{{encoder}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train_aplc.{{encoder}}.tsv"
    params:
        model=encoder_model,
        aplc=aplc_params,
        code=code_version("train_aplc.py"),
    threads: gpu_threads(MATCHER_GPUS)
    resources:
        gpu=MATCHER_GPUS,  # > 1: data-parallel, as train_matcher
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/train_aplc.py"


rule predict_aplc:
    """Top-k labels of one split's instances (valid or test) by p(label | x)."""
    input:
        model=f"{APLC}/model",
        tokens=f"{R}/{{dataset}}/tokens/{{encoder}}/{{split}}.npz",
    output:
        f"{R}/{{dataset}}/predictions/{{split}}/{xmc_config.APLC_PREFIX}{{encoder}}.npz",
    log:
        f"{R}/logs/{{dataset}}/predict_aplc.{{encoder}}.{{split}}.log",
    wildcard_constraints:
        split=EVAL_SPLITS,
    params:
        aplc=aplc_params,
        code=code_version("predict_aplc.py"),
    threads: gpu_threads(ONE_GPU)
    resources:
        gpu=ONE_GPU,
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/predict_aplc.py"
