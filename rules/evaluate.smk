rule evaluate:
    """P@1,3,5 and R@1,3,5 of one model or ensemble on the test split."""
    input:
        pred=f"{R}/{{dataset}}/predictions/{{model}}.npz",
        Y=f"{R}/{{dataset}}/prepared/Y.test.npz",
    output:
        f"{R}/{{dataset}}/metrics/{{model}}.json",
    log:
        f"{R}/logs/{{dataset}}/evaluate.{{model}}.log",
    params:
        description=model_description,
        code=code_version("metrics.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/evaluate.py"


rule tables:
    """One row per model and ensemble: results/tables/results.{csv,md}."""
    input:
        all_metrics(),
    output:
        csv=report(f"{R}/tables/results.csv", caption="../report/results.rst", category="Results"),
        md=f"{R}/tables/results.md",
    log:
        f"{R}/logs/tables.log",
    params:
        code=code_version("tables.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/tables.py"
