#!/usr/bin/env bash
# The one-GPU measurement of recipes/README.md in one go: the single-GPU commands on full MNIST, then the overhead of
# IngrainTrainer against a plain Trainer on the same data, model and training arguments.
#
#   recipes/gpu_check.sh DATA_DIR RESULTS_DIR [extra flags for all three commands]
#
# DATA_DIR: ylecun/mnist (downloads) or a local parquet copy of it (train-*.parquet, test-*.parquet).
# RESULTS_DIR: receives gpu.txt, ingrain.log, distill.log, bench.log, ingrain_results.json, distill_results.json and
# bench_overhead.json. The key and the models go to a temporary folder, deleted at the end.
# Extra flags (e.g. `--max_steps 20 --use_cpu true` for a smoke run on a CPU) are passed to all three commands;
# KEY_FLAGS (e.g. `KEY_FLAGS="--ingrainer_steps 20 --num_reference_keys 2"`) only to the command that makes the key.
#
# Not yet timed on a GPU; the same three steps took about 18 minutes on 2 CPU cores. On a machine without `datasets`
# (a bare GPU image), carry its wheel and those of `dill` and `multiprocess`, install them with
# `pip install --no-deps --target /tmp/site`, and run with `PYTHONPATH=$PWD:/tmp/site`: hf_ingrain then imports from
# this checkout without being installed.
set -euo pipefail

DATA_DIR=${1:?usage: recipes/gpu_check.sh DATA_DIR RESULTS_DIR [extra flags]}
RESULTS_DIR=${2:?usage: recipes/gpu_check.sh DATA_DIR RESULTS_DIR [extra flags]}
shift 2
mkdir -p "$RESULTS_DIR"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no GPU (nvidia-smi failed)"
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee "$RESULTS_DIR/gpu.txt"

set -x
time accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml \
    recipes/ingrain.py --config recipes/configs/mnist_resnet.yaml --dataset "$DATA_DIR" \
    --key_dir "$WORK/keys" --key_seed 0 --output_dir "$WORK/mnist_resnet" --disable_tqdm true ${KEY_FLAGS:-} "$@" \
    2>&1 | tee "$RESULTS_DIR/ingrain.log"
cp "$WORK/mnist_resnet/ingrain_results.json" "$RESULTS_DIR/"

time accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml \
    recipes/distill_attack.py --config recipes/configs/distill_mnist_resnet.yaml --dataset "$DATA_DIR" \
    --key_dir "$WORK/keys" --teacher "$WORK/mnist_resnet" --output_dir "$WORK/mnist_resnet_distilled" \
    --disable_tqdm true "$@" 2>&1 | tee "$RESULTS_DIR/distill.log"
cp "$WORK/mnist_resnet_distilled/distill_results.json" "$RESULTS_DIR/"

# bf16 as in single_gpu.yaml, when the GPU supports it (the bench runs without accelerate launch)
BF16=$(python -c "import torch; print(str(torch.cuda.is_available() and torch.cuda.is_bf16_supported()).lower())")
time python docs/overhead/bench_overhead.py --config recipes/configs/mnist_resnet.yaml --dataset "$DATA_DIR" \
    --key_dir "$WORK/keys" --output_dir "$WORK/bench" --bf16 "$BF16" --repeats 3 \
    --results_file "$RESULTS_DIR/bench_overhead.json" "$@" 2>&1 | tee "$RESULTS_DIR/bench.log"
