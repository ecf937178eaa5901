# The peers as rows of the same tables (peers.systems): PECOS XR-Linear and omikuji on the dataset's
# TF-IDF and validation / test splits, run by peers.python (xmc.peers; the interpreter and the project folder come
# from the environment that rules/common.smk sets). Their times and peak memory reach the
# results table through train.json / predict.json, and the timing table through the benchmarks.
PEER = f"{R}/{{dataset}}/peers/{{peer}}"


rule train_peer:
    """Train a peer with its published defaults on the training TF-IDF."""
    input:
        X=f"{R}/{{dataset}}/tfidf/X.train.npz",
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
    output:
        model=directory(f"{PEER}/model"),
        info=f"{PEER}/train.json",
    log:
        f"{R}/logs/{{dataset}}/train_peer.{{peer}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/train_peer.{{peer}}.tsv"
    params:
        python=CFG["peers"]["python"],
        code=code_version("peer.py"),
    threads: min(workflow.cores, 32)  # a cap a cluster node accepts (profiles/slurm sets 16)
    conda:
        "../environment-peers.yml"
    shell:
        'PYTHONPATH="$XMC_PROJECT_ROOT" "$XMC_PEER_INTERPRETER" "$XMC_PROJECT_ROOT/workflow_scripts/peer.py"'
        " train --system {wildcards.peer}"
        " --X {input.X:q} --Y {input.Y:q} --model {output.model:q} --info {output.info:q}"
        " --threads {threads} --log {log:q}"


rule predict_peer:
    """Top-k labels of one split's documents (valid or test) from a trained peer."""
    input:
        model=f"{PEER}/model",
        X=f"{R}/{{dataset}}/tfidf/X.{{split}}.npz",
    output:
        pred=f"{R}/{{dataset}}/predictions/{{split}}/{{peer}}.npz",
        info=f"{PEER}/predict.{{split}}.json",
    log:
        f"{R}/logs/{{dataset}}/predict_peer.{{peer}}.{{split}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/predict_peer.{{peer}}.{{split}}.tsv"
    wildcard_constraints:
        split=EVAL_SPLITS,
    params:
        python=CFG["peers"]["python"],
        top_k=CFG["ranker"]["top_k"],
        code=code_version("peer.py"),
    threads: min(workflow.cores, 32)  # a cap a cluster node accepts (profiles/slurm sets 16)
    conda:
        "../environment-peers.yml"
    shell:
        'PYTHONPATH="$XMC_PROJECT_ROOT" "$XMC_PEER_INTERPRETER" "$XMC_PROJECT_ROOT/workflow_scripts/peer.py"'
        " predict --system {wildcards.peer}"
        " --X {input.X:q} --model {input.model:q} --out {output.pred:q} --info {output.info:q}"
        " --top-k {params.top_k} --threads {threads} --log {log:q}"
