#!/usr/bin/env bash
# The CUDA numbers the README quotes, measured in one go on a machine with a GPU:
#     bash experiments/measure_gpu.sh [LOG_DIR]      (logs in LOG_DIR, default out/gpu_logs)
# The CUDA tests, the default pipeline over seeds 0-2 through sweep.py (out/gpu_sweep: the
# mean +- std table and each script's seconds), and bench.py for the default model and for
# a 57M-parameter one, eager and compiled.
set -euo pipefail
logs=${1:-out/gpu_logs}
run=out/gpu_run
mkdir -p "$logs" "$run"
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
} | tee "$logs/machine.txt"
python3 -m pytest -q tests/test_cuda.py tests/test_model.py 2>&1 | tee "$logs/tests.log"
python3 experiments/sweep.py --seeds 0-2 --out out/gpu_sweep train_sft.py train_dpo.py train_grpo.py \
    2>&1 | tee "$logs/sweep.log"
python3 experiments/bench.py --out_dir "$run" 2>&1 | tee "$logs/bench_default.log"
big=(--n_layer 8 --n_embd 768 --n_head 12 --block_size 256 --batch_size 64 --skip_naive)
python3 experiments/bench.py "${big[@]}" 2>&1 | tee "$logs/bench_57m.log"
python3 experiments/bench.py "${big[@]}" --compile 2>&1 | tee "$logs/bench_57m_compiled.log"
