rule evaluate:
    """P@1,3,5 and R@1,3,5 of one model or ensemble on one split (valid or test), and the share of
    the true labels its matcher's shortlist (top-b clusters) lets the rankers see."""
    input:
        pred=f"{R}/{{dataset}}/predictions/{{split}}/{{model}}.npz",
        Y=f"{R}/{{dataset}}/prepared/Y.{{split}}.npz",
        costs=model_costs,
        selection=ensemble_selection_files,
        shortlist=model_shortlist,
    output:
        f"{R}/{{dataset}}/metrics/{{split}}/{{model}}.json",
    log:
        f"{R}/logs/{{dataset}}/evaluate.{{model}}.{{split}}.log",
    wildcard_constraints:
        split=EVAL_SPLITS,
    params:
        description=model_description,
        members=model_member_descriptions,
        code=code_version("evaluate.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/evaluate.py"


rule tables:
    """One row per model and ensemble and split (results.{csv,md}: valid and test), and the paper's
    Table 3 and Table 5 layouts (test split) with the published figures beside ours
    (table3/table5.{md,csv,tex,html})."""
    input:
        all_metrics(),
    output:
        csv=report(f"{R}/tables/results.csv", caption="../report/results.rst", category="Tables"),
        md=f"{R}/tables/results.md",
        table3_md=f"{R}/tables/table3.md",
        table3_csv=f"{R}/tables/table3.csv",
        table3_tex=f"{R}/tables/table3.tex",
        table3_html=report(f"{R}/tables/table3.html", caption="../report/table3.rst", category="Tables"),
        table5_md=f"{R}/tables/table5.md",
        table5_csv=f"{R}/tables/table5.csv",
        table5_tex=f"{R}/tables/table5.tex",
        table5_html=report(f"{R}/tables/table5.html", caption="../report/table5.rst", category="Tables"),
    log:
        f"{R}/logs/tables.log",
    params:
        datasets=DATASETS,
        paper_names=paper_datasets(),
        table3_methods=table3_methods(),
        table5_ids=table5_ids(),
        table3_notes=xmc_paper.table3_notes(CFG),
        table5_roles=xmc_paper.table5_roles(CFG),
        same_as_paper=paper_same_data(),
        paper_table3=xmc_paper.PAPER_TABLE3,
        paper_table5=xmc_paper.PAPER_TABLE5,
        code=code_version("tables.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/tables.py"
