RANKER = f"{R}/{{dataset}}/ranker/{{indexer}}/{{matcher}}/{{input}}.{{negatives}}"
RANKER_SHARDS = CFG["ranker"]["shards"]


# ranker.shards > 1: each ranker trains as that many jobs, each over the labels of a contiguous run
# of K / shards clusters, and merge_ranker joins them into model.npz (the same weights). The shard
# count is a wildcard (one value, ranker.shards) so that profiles/slurm's resource expressions can
# size a shard's job from it.
SHARDED = RANKER_SHARDS > 1
SHARD = ".{shard}-of-{shards}" if SHARDED else ""


rule train_ranker:
    """Per-label linear one-vs-all models inside clusters, on TFN / MAN / TFN+MAN negatives (one
    shard of them with ranker.shards > 1). An XR-Transformer row's MAN negatives come from the
    linear shortlist's top-b with xr_transformer.shortlist: linear (see xmc.plan.ranker_input_files)."""
    input:
        unpack(ranker_train_files),
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
        C=f"{R}/{{dataset}}/indexer/{{indexer}}/C.npz",
    output:
        temp(f"{RANKER}/shards/{{shard}}-of-{{shards}}.npz") if SHARDED else f"{RANKER}/model.npz",
    log:
        f"{R}/logs/{{dataset}}/train_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}{SHARD}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}{SHARD}.tsv"
    wildcard_constraints:
        shard=r"\d+",
        shards=str(RANKER_SHARDS),
    params:
        ranker=ranker_params(),
        shard=lambda wc: (int(wc.shard), RANKER_SHARDS) if SHARDED else None,
        code=code_version("train_ranker.py"),
    threads: workflow.cores
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/train_ranker.py"


if SHARDED:

    rule merge_ranker:
        """Join the ranker shards: each label's weights come from the one shard that trained them."""
        input:
            expand(f"{RANKER}/shards/{{shard}}-of-{{shards}}.npz", shard=range(RANKER_SHARDS), shards=RANKER_SHARDS, allow_missing=True),
        output:
            f"{RANKER}/model.npz",
        log:
            f"{R}/logs/{{dataset}}/merge_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.log",
        benchmark:
            f"{R}/benchmarks/{{dataset}}/merge_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.tsv"
        params:
            code=code_version("merge_ranker.py"),
        conda:
            "../environment.yml"
        script:
            "../workflow_scripts/merge_ranker.py"


rule predict_ranker:
    """Score the labels of each instance's top-b clusters (valid or test split) and combine with the
    matcher: sigma(g, h)."""
    input:
        unpack(ranker_predict_files),
        model=f"{RANKER}/model.npz",
    output:
        f"{R}/{{dataset}}/predictions/{{split}}/{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.{{combine}}.npz",
    log:
        f"{R}/logs/{{dataset}}/predict_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.{{combine}}.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/predict_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.{{combine}}.{{split}}.tsv"
    wildcard_constraints:
        split=EVAL_SPLITS,
    params:
        top_k=CFG["ranker"]["top_k"],
        code=code_version("predict_ranker.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/predict_ranker.py"
