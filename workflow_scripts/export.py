from pathlib import Path

from xmc.bundle import export_bundle, export_ensemble
from xmc.hub import model_folder
from xmc.io import load_json
from xmc.runlog import finish, start

log = start(snakemake.log[0], "export")
inp, s, name = snakemake.input, snakemake.params.bundle, snakemake.wildcards.model
common = dict(name=name, dataset=snakemake.wildcards.dataset, top_k=s["top_k"], config=s["config"],
              metrics=load_json(inp.metrics))
if s["kind"] == "ensemble":
    members, method = list(inp.members), s["method"]
    if "selection" in inp.keys():  # method auto: the rule and members picked on validation
        pick = load_json(inp.selection)
        method = pick["method"]
        members = [path for path in members if Path(path).name in pick["members"]]
    export_ensemble(snakemake.output[0], members=members, method=method, **common)
else:
    pretrained = None
    if "knn_pretrained" in s:  # the vote also reads the pretrained encoder: it goes in the bundle
        settings = s["knn_pretrained"]
        pretrained = {"encoder": model_folder(settings["model"]), "memory": inp.knn_pretrained_memory,
                      "max_length": settings["max_length"], "precision": settings["precision"]}
    export_bundle(snakemake.output[0], vectorizer=inp.vectorizer, assignment=inp.assignment, matcher=inp.matcher,
                  ranker=inp.ranker, label_names=inp.labels, label_texts=inp.label_texts,
                  ranker_input=s["ranker_input"], combine=s["combine"], top_b=s["top_b"],
                  max_length=s["max_length"], knn=s["knn"], knn_memory=inp.get("knn_memory"),
                  knn_targets=inp.get("knn_targets"), knn_pretrained=pretrained, **common)
log.info("%s bundle %s written to %s", s["kind"], name, snakemake.output[0])

finish()
