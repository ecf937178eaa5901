RANKER = f"{R}/{{dataset}}/ranker/{{indexer}}/{{matcher}}/{{input}}.{{negatives}}"
RANKER_SHARDS = CFG["ranker"]["shards"]


if RANKER_SHARDS == 1:

    rule train_ranker:
        """Per-label linear one-vs-all models inside clusters, on TFN / MAN / TFN+MAN negatives."""
        input:
            unpack(ranker_features),
            Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
            C=f"{R}/{{dataset}}/indexer/{{indexer}}/C.npz",
        output:
            f"{RANKER}/model.npz",
        log:
            f"{R}/logs/{{dataset}}/train_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.log",
        benchmark:
            f"{R}/benchmarks/{{dataset}}/train_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.tsv"
        params:
            ranker=ranker_params(),
            shard=None,
            code=code_version("train_ranker.py"),
        threads: workflow.cores
        conda:
            "../environment.yml"
        script:
            "../workflow_scripts/train_ranker.py"

else:

    rule train_ranker:
        """One shard of the ranker: the labels of a contiguous run of K / shards clusters
        (ranker.shards > 1); merge_ranker joins the shards into model.npz."""
        input:
            unpack(ranker_features),
            Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
            C=f"{R}/{{dataset}}/indexer/{{indexer}}/C.npz",
        output:
            temp(f"{RANKER}/shards/{{shard}}-of-{RANKER_SHARDS}.npz"),
        log:
            f"{R}/logs/{{dataset}}/train_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.{{shard}}-of-{RANKER_SHARDS}.log",
        benchmark:
            f"{R}/benchmarks/{{dataset}}/train_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.{{shard}}-of-{RANKER_SHARDS}.tsv"
        wildcard_constraints:
            shard=r"\d+",
        params:
            ranker=ranker_params(),
            shard=lambda wc: (int(wc.shard), RANKER_SHARDS),
            code=code_version("train_ranker.py"),
        threads: workflow.cores
        conda:
            "../environment.yml"
        script:
            "../workflow_scripts/train_ranker.py"

    rule merge_ranker:
        """Join the ranker shards: each label's weights come from the one shard that trained them."""
        input:
            expand(f"{RANKER}/shards/{{shard}}-of-{RANKER_SHARDS}.npz", shard=range(RANKER_SHARDS), allow_missing=True),
        output:
            f"{RANKER}/model.npz",
        log:
            f"{R}/logs/{{dataset}}/merge_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.log",
        params:
            code=code_version("merge_ranker.py"),
        conda:
            "../environment.yml"
        script:
            "../workflow_scripts/merge_ranker.py"


rule predict_ranker:
    """Score the labels of each test instance's top-b clusters and combine with the matcher: sigma(g, h)."""
    input:
        unpack(ranker_features),
        model=f"{RANKER}/model.npz",
    output:
        f"{R}/{{dataset}}/predictions/{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.{{combine}}.npz",
    log:
        f"{R}/logs/{{dataset}}/predict_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.{{combine}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/predict_ranker.{{indexer}}.{{matcher}}.{{input}}.{{negatives}}.{{combine}}.tsv"
    params:
        top_k=CFG["ranker"]["top_k"],
        code=code_version("predict_ranker.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/predict_ranker.py"
