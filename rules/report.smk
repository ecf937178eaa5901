rule figure_label_frequency:
    """The long tail: training instances per label against the label's rank."""
    input:
        f"{R}/{{dataset}}/prepared/Y.train.npz",
    output:
        png=report(f"{R}/figures/{{dataset}}/label_frequency.png", caption="../report/label_frequency.rst",
                   category="Figures", subcategory="{dataset}"),
        pdf=f"{R}/figures/{{dataset}}/label_frequency.pdf",
    log:
        f"{R}/logs/{{dataset}}/figure.label_frequency.log",
    params:
        code=code_version("figure_label_frequency.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/figure_label_frequency.py"


rule figure_cluster_sizes:
    """Labels and training instances per cluster of every indexer (the paper's Figure 1)."""
    input:
        Y=f"{R}/{{dataset}}/prepared/Y.train.npz",
        C=cluster_assignments,
    output:
        png=report(f"{R}/figures/{{dataset}}/cluster_sizes.png", caption="../report/cluster_sizes.rst",
                   category="Figures", subcategory="{dataset}"),
        pdf=f"{R}/figures/{{dataset}}/cluster_sizes.pdf",
    log:
        f"{R}/logs/{{dataset}}/figure.cluster_sizes.log",
    params:
        indexers=CFG["indexers"],
        code=code_version("figure_cluster_sizes.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/figure_cluster_sizes.py"


rule figure_precision_at_k:
    """P@1, P@3, P@5 of every model and ensemble of a dataset (test split): a dot plot, grouped."""
    input:
        dataset_metrics,
    output:
        png=report(f"{R}/figures/{{dataset}}/precision_at_k.png", caption="../report/precision_at_k.rst",
                   category="Figures", subcategory="{dataset}"),
        pdf=f"{R}/figures/{{dataset}}/precision_at_k.pdf",
    log:
        f"{R}/logs/{{dataset}}/figure.precision_at_k.log",
    params:
        labels=figure_model_labels(),
        groups=xmc_paper.model_groups(CFG),
        marks=xmc_paper.role_marks(CFG),
        code=code_version("figure_precision_at_k.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/figure_precision_at_k.py"


rule timing:
    """Wall time and peak memory of every benchmarked job, and per step.

    Benchmark files are written by Snakemake after each job, they are no rule's output, so this
    rule cannot list them as inputs: it depends on every metrics file instead (all benchmarked jobs
    lie upstream of them, so they are finished) and reads whatever lies under benchmarks/. It reruns
    whenever a metrics file is rebuilt; a job that did not rerun keeps its last benchmark."""
    input:
        all_metrics(),
    output:
        md=f"{R}/tables/timing.md",
        csv=f"{R}/tables/timing.csv",
        steps=f"{R}/tables/timing_steps.csv",
        html=report(f"{R}/tables/timing.html", caption="../report/timing.rst", category="Timing"),
    log:
        f"{R}/logs/timing.log",
    params:
        folder=f"{R}/benchmarks",
        logs=f"{R}/logs",  # each job's exact peak memory (xmc.runlog), which the benchmark's sampler misses
        code=code_version("timing.py"),
    conda:
        "../environment.yml"
    script:
        "../workflow_scripts/timing.py"
