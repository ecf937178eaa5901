rule label_repr_pifa_tfidf:
    """PIFA over TF-IDF: the normalised sum of each label's positive instances."""
    input:
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
        X=f"{R}/{{dataset}}/tfidf/X.train.npz",
    output:
        f"{R}/{{dataset}}/label_repr/pifa-tfidf.npz",
    log:
        f"{R}/logs/{{dataset}}/label_repr.pifa-tfidf.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/label_repr.pifa-tfidf.tsv"
    params:
        code=code_version("label_repr_pifa.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/label_repr_pifa.py"


rule label_repr_pifa_neural:
    """PIFA over the embeddings of a first, fine-tuned matcher (so it depends on that matcher)."""
    input:
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
        X=pifa_neural_embeddings,
    output:
        f"{R}/{{dataset}}/label_repr/pifa-neural.npz",
    log:
        f"{R}/logs/{{dataset}}/label_repr.pifa-neural.log",
    params:
        code=code_version("label_repr_pifa.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/label_repr_pifa.py"


rule label_repr_text_emb:
    """text-emb: mean-pooled pretrained token embeddings of each label's text."""
    input:
        label_text=f"{R}/{{dataset}}/prepared/label_text.txt",
        label_names=f"{R}/{{dataset}}/prepared/label_names.txt",
    output:
        f"{R}/{{dataset}}/label_repr/text-emb.npz",
    log:
        f"{R}/logs/{{dataset}}/label_repr.text-emb.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/label_repr.text-emb.tsv"
    params:
        model=text_emb_encoder_model,
        max_length=CFG["text_emb"]["max_length"],
        batch_size=CFG["text_emb"]["batch_size"],
        code=code_version("label_repr_text_emb.py"),
    threads: gpu_threads(ONE_GPU)
    resources:
        gpu=ONE_GPU,
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/label_repr_text_emb.py"


rule cluster:
    """Semantic label indexing: balanced spherical 2-means, recursively, into K clusters."""
    input:
        label_repr_path,
    output:
        f"{R}/{{dataset}}/indexer/{{indexer}}/C.npz",
    log:
        f"{R}/logs/{{dataset}}/cluster.{{indexer}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/cluster.{{indexer}}.tsv"
    params:
        n_clusters=n_clusters,
        max_iter=CFG["indexing"]["max_iter"],
        seed=CFG["seed"],
        code=code_version("cluster.py"),
    threads: workflow.cores
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/cluster.py"
