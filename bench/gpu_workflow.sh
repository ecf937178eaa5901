#!/usr/bin/env bash
# The workflow end to end on a GPU machine: the default config with --resources gpu=N,
# then the same with XR-Transformer and APLC rows switched on. From the repository root, after
# `pip install -e .` (a CUDA build of torch 2.13.0 where the machine has one):
#   bash bench/gpu_workflow.sh [N_GPUS] [OUT_DIR]
# DRY=1 only plans both runs (checks the script on a CPU machine). Prints the device, the timing
# table of each run, which GPU each GPU job was given (from the job logs) and the results table.
set -euo pipefail
GPUS=${1:-1}
OUT=${2:-bench/results/gpu-workflow}
FLAGS=(--cores all --resources "gpu=$GPUS")
[[ "${DRY:-0}" == 1 ]] && FLAGS+=(-n)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$OUT"
nvidia-smi -L || echo "no nvidia-smi: jobs run on the CPU (and warn)"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'devices', torch.cuda.device_count())"
lscpu | grep -E "^Model name" || true

run() {  # name, extra snakemake args...
  local name=$1; shift
  echo "=== $name: snakemake ${FLAGS[*]} $*"
  /usr/bin/time -v snakemake "${FLAGS[@]}" "$@" 2> >(tee "$OUT/$name.stderr" >&2 | grep -E "Elapsed|Maximum resident" >&2)
  if [[ "${DRY:-0}" != 1 ]]; then
    cp results/tables/timing.md "$OUT/$name-timing.md"; cat results/tables/timing.md
    cp results/tables/results.md "$OUT/$name-results.md"; cat results/tables/results.md
    grep -h "GPU(s) .* assigned\|asked for .* GPU" results/logs/*/*.log | sed 's/^[0-9-]* [0-9:,]* //' | tee "$OUT/$name-devices.txt"
  fi
}

run default
python - "$OUT/related.yaml" <<'PY'
import sys, yaml
c = yaml.safe_load(open("config/config.yaml"))
c["xr_transformer"]["encoders"] = ["minilm"]
c["aplc"]["encoders"] = ["minilm"]
yaml.safe_dump(c, open(sys.argv[1], "w"))
PY
run related --configfile "$OUT/related.yaml"
