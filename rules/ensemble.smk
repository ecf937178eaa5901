rule ensemble:
    """Combine the top-k lists of several models (average, rank_average, round_robin, softmax_average,
    sigmoid_average)."""
    input:
        ensemble_inputs,
    output:
        f"{R}/{{dataset}}/predictions/{{ensemble}}.npz",
    log:
        f"{R}/logs/{{dataset}}/ensemble.{{ensemble}}.log",
    params:
        method=ensemble_method,
        members=ensemble_members,
        top_k=CFG["ranker"]["top_k"],
        code=code_version("ensemble.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/ensemble.py"
