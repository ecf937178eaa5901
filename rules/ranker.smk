RANKER = f"{R}/{{dataset}}/ranker/{{indexer}}/{{matcher}}/{{input}}.{{negatives}}"


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
        code=code_version("ranker.py", "linear.py"),
    threads: workflow.cores
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/train_ranker.py"


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
        code=code_version("ranker.py", "linear.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/predict_ranker.py"
