#!/usr/bin/env bash
# GPU checks for one GPU machine; no Snakemake, no packaged weights (random encoders
# built from configs). From the repository root:
#   bash bench/gpu_check.sh 2>&1 | tee gpu_check.log
# About 2-3 minutes on an H100: throughput and MFU of MiniLM and BERT-base (fp32, bf16), our loop
# against a bare Hugging Face loop; then 2 concurrent jobs through the slot allocator; with >= 2
# GPUs also 2-GPU data-parallel training against 1 GPU.
set -uo pipefail
PY=${PYTHON:-python3}
export PYTHONPATH=${PYTHONPATH:-.} HF_HUB_OFFLINE=1
status=0
nvidia-smi -L || { echo "no nvidia-smi: not a GPU machine?"; exit 1; }
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
for cfg in minilm bert-base; do
  for prec in fp32 bf16; do
    echo "=== throughput $cfg $prec"
    timeout 150 $PY -m bench.throughput --config "$cfg" --device cuda --precision "$prec" \
      --batch-size 32 --max-length 128 --steps 30 --warmup 5 --repeats 2 2>/tmp/throughput.err \
      || { status=1; echo "FAILED:"; tail -20 /tmp/throughput.err; }
  done
done
echo "=== slot allocator and data-parallel"
timeout 300 $PY -m bench.gpu_check || status=1
echo "gpu_check.sh exit status $status"
exit $status
