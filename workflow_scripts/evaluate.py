from xmc.io import load_csr, load_json, save_json
from xmc.metrics import precision_recall_at_k, shortlist_recall
from xmc.peers import merge_costs
from xmc.plan import join_descriptions
from xmc.runlog import finish, start

log = start(snakemake.log[0], "evaluate")
Y = load_csr(snakemake.input.Y)
scores = precision_recall_at_k(load_csr(snakemake.input.pred), Y, ks=(1, 3, 5))
if snakemake.input.shortlist:  # a matcher's top-b: what its rankers could find at most
    M, C = (load_csr(path) for path in snakemake.input.shortlist)
    scores["shortlist_recall"] = round(shortlist_recall(M, Y, C)["label_recall"], 2)
log.info("%s: %s", snakemake.wildcards.model, scores)
row = {"dataset": snakemake.wildcards.dataset, "model": snakemake.wildcards.model,
       "split": snakemake.wildcards.split, **snakemake.params.description, **scores}
if snakemake.input.selection:  # an auto ensemble: name the rule and members validation picked
    pick = load_json(snakemake.input.selection[0])
    row.update(join_descriptions([snakemake.params.members[m] for m in pick["members"]],
                                 f"auto: {pick['method']} of {len(pick['members'])}"))
if snakemake.input.costs:  # a peer: its own training/prediction times and peak memory
    row.update(merge_costs([load_json(path) for path in snakemake.input.costs]))
save_json(snakemake.output[0], row)

finish()
