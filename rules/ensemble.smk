rule select_ensemble:
    """method: auto: pick the rule and members on the validation split (xmc.selection); reads no
    test file, so the pick is fixed before any test document is scored."""
    input:
        preds=ensemble_candidate_predictions,
        Y=f"{R}/{{dataset}}/prepared/Y.valid.npz",
    output:
        f"{R}/{{dataset}}/selection/{{ensemble}}.json",
    log:
        f"{R}/logs/{{dataset}}/select_ensemble.{{ensemble}}.log",
    benchmark:
        f"{R}/benchmarks/{{dataset}}/select_ensemble.{{ensemble}}.tsv"
    params:
        members=ensemble_members,
        top_k=CFG["ranker"]["top_k"],
        code=code_version("select_ensemble.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/select_ensemble.py"


rule ensemble:
    """Combine the top-k lists of several models (average, rank_average, round_robin, softmax_average,
    sigmoid_average; auto: the rule and members select_ensemble picked on validation) on one split."""
    input:
        preds=ensemble_inputs,
        selection=ensemble_selection_files,
    output:
        f"{R}/{{dataset}}/predictions/{{split}}/{{ensemble}}.npz",
    log:
        f"{R}/logs/{{dataset}}/ensemble.{{ensemble}}.{{split}}.log",
    wildcard_constraints:
        split=EVAL_SPLITS,
    params:
        method=ensemble_method,
        members=ensemble_members,
        top_k=CFG["ranker"]["top_k"],
        code=code_version("ensemble.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/ensemble.py"
