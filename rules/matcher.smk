MATCHER = f"{R}/{{dataset}}/matcher/{{indexer}}/{{encoder}}"
LINEAR = f"{R}/{{dataset}}/matcher/{{indexer}}/linear"


rule train_matcher:
    """Fine-tune an encoder on instance->cluster targets M = YC with the squared hinge loss.

    Every matcher.checkpoint_every steps the training state goes to {MATCHER}/checkpoint (not an
    output, so it survives a killed job); a rerun resumes from it, and it is removed on success.
    """
    input:
        unpack(matcher_init_embeddings),
        tokens=f"{R}/{{dataset}}/tokens/{{encoder}}/train.npz",
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
        C=f"{R}/{{dataset}}/indexer/{{indexer}}/C.npz",
    output:
        directory(f"{MATCHER}/model"),
    log:
        f"{R}/logs/{{dataset}}/train_matcher.{{indexer}}.{{encoder}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train_matcher.{{indexer}}.{{encoder}}.tsv"
    params:
        model=encoder_model,
        matcher=matcher_train_params,
        code=code_version("train_matcher.py"),
    threads: gpu_threads(MATCHER_GPUS)
    resources:
        gpu=MATCHER_GPUS,
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/train_matcher.py"


rule predict_matcher:
    """Top-b clusters and phi_neural embeddings for every split."""
    input:
        model=f"{MATCHER}/model",
        tokens_train=f"{R}/{{dataset}}/tokens/{{encoder}}/train.npz",
        tokens_valid=f"{R}/{{dataset}}/tokens/{{encoder}}/valid.npz",
        tokens_test=f"{R}/{{dataset}}/tokens/{{encoder}}/test.npz",
    output:
        topb_train=f"{MATCHER}/topb.train.npz",
        topb_valid=f"{MATCHER}/topb.valid.npz",
        topb_test=f"{MATCHER}/topb.test.npz",
        emb_train=f"{MATCHER}/emb.train.npy",
        emb_valid=f"{MATCHER}/emb.valid.npy",
        emb_test=f"{MATCHER}/emb.test.npy",
    log:
        f"{R}/logs/{{dataset}}/predict_matcher.{{indexer}}.{{encoder}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/predict_matcher.{{indexer}}.{{encoder}}.tsv"
    params:
        top_b=matcher_top_b,
        matcher=matcher_params,
        code=code_version("predict_matcher.py"),
    threads: gpu_threads(ONE_GPU)
    resources:
        gpu=ONE_GPU,  # prediction runs on one device
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/predict_matcher.py"


rule knn_shortlist:
    """With matcher.knn: the matcher's top-b clusters voted by the training documents nearest in its
    fine-tuned embedding (their clusters M = YC; with knn.pretrained_weight, partly nearest in phi_pre),
    mixed with the head's; training documents are scored leave-one-out. The rankers read these
    instead of the head's (xmc.plan.ranker_input_files)."""
    input:
        unpack(knn_pretrained_embeddings),
        emb_train=f"{MATCHER}/emb.train.npy",
        emb_valid=f"{MATCHER}/emb.valid.npy",
        emb_test=f"{MATCHER}/emb.test.npy",
        head_train=f"{MATCHER}/topb.train.npz",
        head_valid=f"{MATCHER}/topb.valid.npz",
        head_test=f"{MATCHER}/topb.test.npz",
        Y_train=f"{R}/{{dataset}}/prepared/Y.train.npz",
        C=f"{R}/{{dataset}}/indexer/{{indexer}}/C.npz",
    output:
        topb_train=f"{MATCHER}/knn/topb.train.npz",
        topb_valid=f"{MATCHER}/knn/topb.valid.npz",
        topb_test=f"{MATCHER}/knn/topb.test.npz",
    log:
        f"{R}/logs/{{dataset}}/knn_shortlist.{{indexer}}.{{encoder}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/knn_shortlist.{{indexer}}.{{encoder}}.tsv"
    params:
        top_b=matcher_top_b,
        knn=matcher_knn,
        code=code_version("knn_shortlist.py"),
    threads: workflow.cores
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/knn_shortlist.py"


rule train_linear_matcher:
    """phi_tfidf + linear baseline: one-vs-all linear models over the K clusters on TF-IDF."""
    input:
        X_train=f"{R}/{{dataset}}/tfidf/X.train.npz",
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
        C=f"{R}/{{dataset}}/indexer/{{indexer}}/C.npz",
    output:
        f"{LINEAR}/model.npz",
    log:
        f"{R}/logs/{{dataset}}/train_matcher.{{indexer}}.linear.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train_matcher.{{indexer}}.linear.tsv"
    params:
        C=CFG["linear_baseline"]["C"],
        threshold=CFG["linear_baseline"]["threshold"],
        branching=CFG["linear_baseline"]["branching"],
        code=code_version("train_linear_matcher.py"),
    threads: workflow.cores
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/train_linear_matcher.py"


rule predict_linear_matcher:
    input:
        model=f"{LINEAR}/model.npz",
        X_train=f"{R}/{{dataset}}/tfidf/X.train.npz",
        X_valid=f"{R}/{{dataset}}/tfidf/X.valid.npz",
        X_test=f"{R}/{{dataset}}/tfidf/X.test.npz",
    output:
        topb_train=f"{LINEAR}/topb.train.npz",
        topb_valid=f"{LINEAR}/topb.valid.npz",
        topb_test=f"{LINEAR}/topb.test.npz",
    log:
        f"{R}/logs/{{dataset}}/predict_matcher.{{indexer}}.linear.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/predict_matcher.{{indexer}}.linear.tsv"
    params:
        top_b=baseline_top_b,
        code=code_version("predict_linear_matcher.py"),
    threads: workflow.cores
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/predict_linear_matcher.py"


LINEAR_FEATURES = f"{R}/{{dataset}}/matcher/{{indexer}}/linear.{{input}}"


rule train_linear_matcher_features:
    """phi_pre + linear and phi_fnt (+) phi_tfidf + linear: the linear matcher on the baseline's features."""
    input:
        unpack(linear_matcher_train_features),
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
        C=f"{R}/{{dataset}}/indexer/{{indexer}}/C.npz",
    output:
        f"{LINEAR_FEATURES}/model.npz",
    log:
        f"{R}/logs/{{dataset}}/train_matcher.{{indexer}}.linear.{{input}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train_matcher.{{indexer}}.linear.{{input}}.tsv"
    params:
        C=CFG["linear_baseline"]["C"],
        threshold=CFG["linear_baseline"]["threshold"],
        branching=CFG["linear_baseline"]["branching"],
        code=code_version("train_linear_matcher.py"),
    threads: workflow.cores
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/train_linear_matcher.py"


rule predict_linear_matcher_features:
    input:
        unpack(linear_matcher_features),
        model=f"{LINEAR_FEATURES}/model.npz",
    output:
        topb_train=f"{LINEAR_FEATURES}/topb.train.npz",
        topb_valid=f"{LINEAR_FEATURES}/topb.valid.npz",
        topb_test=f"{LINEAR_FEATURES}/topb.test.npz",
    log:
        f"{R}/logs/{{dataset}}/predict_matcher.{{indexer}}.linear.{{input}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/predict_matcher.{{indexer}}.linear.{{input}}.tsv"
    params:
        top_b=baseline_top_b,
        code=code_version("predict_linear_matcher.py"),
    threads: workflow.cores
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/predict_linear_matcher.py"
