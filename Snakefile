# X-Transformer (Chang et al., KDD 2020) as a workflow. See README.md and docs/architecture.md.
from snakemake.utils import min_version

min_version("9.0")


# A config given with --configfile replaces the default one instead of being merged into it
# (Snakemake would otherwise keep the default's datasets and add the other file's).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    indexer=_alternatives(xmc_config.INDEXERS),
    encoder=_alternatives(CFG["encoders"]),
    matcher=_alternatives(list(CFG["encoders"]) + [xmc_config.LINEAR_MATCHER]
                          + [xmc_config.XR_MATCHER_PREFIX + e for e in CFG["xr_transformer"]["encoders"]]),
    input=_alternatives(xmc_config.ranker_inputs(CFG)),
    negatives=_alternatives(xmc_config.NEGATIVES),
    combine=_alternatives(xmc_config.COMBINE),
    ensemble=_alternatives(CFG["ensembles"]) if CFG["ensembles"] else "(?!)",
    split="train|valid|test",
    model=_alternatives(model_names()),
    peer=_alternatives(xmc_config.PEERS),


include: "rules/data.smk"
include: "rules/features.smk"
include: "rules/indexing.smk"
include: "rules/matcher.smk"
include: "rules/ranker.smk"
include: "rules/ensemble.smk"
include: "rules/related.smk"
include: "rules/peers.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/export.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
