#!/usr/bin/env bash
# The GPU figures in one run, for the day a CUDA device is lent: training steps (ours against NVIDIA's loop,
# interleaved) in fp32 and bf16-mixed with the roofline, then synthesis at batch 1 and 8. Under 5 minutes on one
# H100. Not a test, never run in CI. Usage, from the repository root:
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]
#
# OUT_DIR (default: gpu-check-<date>) receives the log, each part's JSON and the profiler tables.
set -euo pipefail

out=${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
python=${PYTHON:-python}
log="$out/gpu_check.log"

"$python" - <<'EOF' 2>&1 | tee "$log"
import torch
if not torch.cuda.is_available():
    raise SystemExit("gpu_check.sh needs a CUDA device: torch.cuda.is_available() is False")
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
EOF

run() {
    echo "== $*" | tee -a "$log"
    timeout 150 "$python" benchmarks/throughput.py --device cuda "$@" 2>&1 | tee -a "$log"
}

run --configs small default --batch-size 16 64 --pairs 5 --roofline --profile-dir "$out/profiles-32" \
    --json "$out/train-32.json"
run --configs small default --batch-size 16 64 --pairs 5 --precision bf16-mixed --roofline \
    --profile-dir "$out/profiles-bf16" --json "$out/train-bf16.json"
run --configs small default --inference --inference-batch 1 8 --pairs 3 --json "$out/inference.json"
echo "gpu_check.sh: done; figures in $out/" | tee -a "$log"
