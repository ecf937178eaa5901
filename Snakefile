# X-Transformer (Chang et al., KDD 2020) as a workflow. See README.md and docs/architecture.md.
from snakemake.utils import min_version

min_version("9.0")


# A config given with --configfile replaces the default one instead of being merged into it
# (Snakemake would otherwise keep the default's datasets and add the other file's).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/features.smk"
include: "rules/indexing.smk"
include: "rules/matcher.smk"
include: "rules/ranker.smk"
include: "rules/ensemble.smk"
include: "rules/evaluate.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
