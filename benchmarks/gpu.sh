#!/usr/bin/env bash
# The GPU figures in RESULTS.md, in one go: run from the repo root on a CUDA machine where
# vitbench is installed. Each step has its own time limit so that one slow step cannot hide
# the rest; a failed step is reported and the next one runs.
set -uo pipefail
step() { echo; echo "### $*"; timeout "$limit" "$@" || echo "(step exited $?)"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch, timm, open_clip; print('torch', torch.__version__, 'timm', timm.__version__, 'open_clip', open_clip.__version__)"
limit=120
step python benchmarks/bench_encode.py --device cuda --dtype fp32 --model vit_b16 --batch 128 --workers 8
for model in vit_b16 vit_l16 eva02_l dinov2_l14; do
  step python benchmarks/bench_encode.py --device cuda --dtype bf16 --model "$model" --batch 128 \
    --workers 8
done
limit=150
step python benchmarks/bench_linear.py --device cuda --threads 16 --repeats 1 --n-train 20000 --dim 768
limit=240
step python benchmarks/bench_pretrain.py --skip-peers --device cuda --model vit_b16 \
  --resolution 224 --batch 128 --steps 10
# What OC / MCI of the visual-tokenizer protocol take when steps are cheap (RESULTS.md, "Visual-
# tokenizer protocol"): OC / MCI questions alone, then the default suite's mixed stages, longer.
limit=900
step python benchmarks/bench_mllm_budget.py --device cuda --threads 16 \
  --tokens oracle-objects,oracle-slots,pixels,vit_pico --steps 1000,4000
step vitbench eval --model pixels,vit_pico --weights random --task shapes_mllm --device cuda \
  --set stage2_steps=4000 --set batch_size=128 --all-metrics --out /tmp/vitbench_gpu_mllm.csv
