"""Train or run a peer (xmc.peers) on the workflow's TF-IDF; run by rules/peers.smk with
`peers.python`, an interpreter that may not have this project installed (so: no `script:`, and
the rule puts the project on PYTHONPATH)."""
import argparse

from xmc.io import atomic_path, load_csr, save_csr, save_json
from xmc.peers import predict, train
from xmc.runlog import finish, start

parser = argparse.ArgumentParser()
parser.add_argument("step", choices=["train", "predict"])
parser.add_argument("--system", required=True)
parser.add_argument("--X", required=True)
parser.add_argument("--Y", help="train: the label matrix")
parser.add_argument("--model", required=True, help="the model folder (train: written)")
parser.add_argument("--out", help="predict: the predictions (.npz)")
parser.add_argument("--info", required=True, help="times and peak memory (.json, written)")
parser.add_argument("--top-k", type=int, default=20)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--log", required=True)
args = parser.parse_args()

log = start(args.log, f"{args.step}_peer")
X = load_csr(args.X)
if args.step == "train":
    Y = load_csr(args.Y)
    log.info("%s: training on %d documents, %d features, %d labels, %d threads",
             args.system, X.shape[0], X.shape[1], Y.shape[1], args.threads)
    with atomic_path(args.model, is_dir=True) as tmp:
        info = train(args.system, X, Y, tmp, threads=args.threads, log=log.info)
else:
    log.info("%s: top-%d labels of %d documents", args.system, args.top_k, X.shape[0])
    pred, info = predict(args.system, args.model, X, args.top_k, threads=args.threads)
    save_csr(args.out, pred)
log.info("%s %s: %s", args.system, args.step, info)
save_json(args.info, {"system": args.system, **info})

finish()
