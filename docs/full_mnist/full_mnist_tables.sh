#!/bin/bash
# The full-MNIST tables of docs/full_mnist/README.md in one command (about 3 hours on 2 CPU cores, one run after
# another), then the claims on the same models (full_mnist_claims.py: audits, timestamped publication, claims):
#   bash docs/full_mnist/full_mnist_tables.sh /path/to/mnist OUT_DIR [RESULTS_JSON [CLAIMS_JSON]]
# /path/to/mnist: a local copy of ylecun/mnist (its parquet layout) or the Hub id itself. Every run is a command of
# recipes/README.md with one flag changed; runs already finished in OUT_DIR are kept. Keys go to OUT_DIR/keys (secret).
# EXTRA_ARGS (flags for every run) and KEY_ARGS (flags for the runs that make a key) shorten a trial run; PYTHON
# names the interpreter (default: python).
set -euo pipefail
D=${1:?give the MNIST copy}; R=${2:?give an output folder}; OUT=${3:-docs/full_mnist/results.json}
CLAIMS=${4:-docs/full_mnist/claims.json}
EXTRA=${EXTRA_ARGS:-}
PY=${PYTHON:-python}
ING="$PY recipes/ingrain.py --config recipes/configs/mnist_resnet.yaml --dataset $D --use_cpu true $EXTRA"
DIS="$PY recipes/distill_attack.py --config recipes/configs/distill_mnist_resnet.yaml --dataset $D --use_cpu true $EXTRA"
done_() { [ -f "$R/$1/$2" ]; }
for k in 0 1 2; do  # one key each, its ingrained teacher and a hard-label student
  done_ teacher$k ingrain_results.json || $ING --key_dir $R/keys/k$k --key_seed $k --output_dir $R/teacher$k ${KEY_ARGS:-}
  done_ label$k distill_results.json || $DIS --teacher $R/teacher$k --key_dir $R/keys/k$k --teacher_output label \
    --output_dir $R/label$k
done
for T in 1 4 10; do  # soft-label students of key 0's teacher
  done_ T$T distill_results.json || $DIS --teacher $R/teacher0 --key_dir $R/keys/k0 --temperature $T --output_dir $R/T$T
done
done_ T4s2 distill_results.json || $DIS --teacher $R/teacher0 --key_dir $R/keys/k0 --seed 2 --output_dir $R/T4s2
for s in 1 2 3 4; do  # independent models: ingrain_lambda 0 is exactly the plain Trainer's loss
  done_ indep$s ingrain_results.json || $ING --key_dir $R/keys/k0 --ingrain_lambda 0 --seed $s --output_dir $R/indep$s
done
$PY docs/full_mnist/full_mnist_tables.py --runs $R --dataset $D --output $OUT
$PY docs/full_mnist/full_mnist_claims.py --runs $R --dataset $D --output $CLAIMS
