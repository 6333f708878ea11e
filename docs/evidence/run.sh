#!/usr/bin/env bash
# Every row of docs/evidence/README.md, one command: beyond digits (issue 34). Resumable: each step writes its results
# file after every seed and skips the seeds already there, so after an interruption run the same command again.
#
#   docs/evidence/run.sh DATA_DIR [KEYS_DIR]
#
# DATA_DIR holds fashion_mnist/, mnist/, health_tweets/ and rotten_tomatoes/, each a folder of parquet files laid out
# like its Hub twin (zalando-datasets/fashion_mnist, ylecun/mnist, ...); KEYS_DIR (default keys/evidence) keeps the
# keys, which are secret: keep it out of the repository. Hours on 2 CPU cores: the 6,000-image rows first, the full
# ones and the text last.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:?usage: docs/evidence/run.sh DATA_DIR [KEYS_DIR]}
KEYS=${2:-keys/evidence}
OUT=docs/evidence
PYTHON=${PYTHON:-python}
EVIDENCE="--students 4 1 label --num_independent 2 --label_only true --seeds 0 1 2"

# 1. fashion_mnist, transformers' ResNet, ConvNeXt and ViT from config, 6,000 owner images, against a plain Trainer:
#    students at T = 4, T = 1 and from labels only, two independent models, every model verified from scores and from
#    labels only.
for architecture in resnet convnext vit; do
  $PYTHON docs/arch_cost/arch_cost.py --data "$DATA/fashion_mnist" --train_size 6000 --architectures $architecture \
    --key_dir "$KEYS/fashion_mnist" $EVIDENCE --results_file $OUT/fashion6k_$architecture.json
done

# 2. Fine-tuned models: a checkpoint trained on fashion_mnist and saved, fine-tuned on mnist, fully and with LoRA
#    (docs/fine_tune's page), students at T = 4, T = 1 and from labels only, every model verified from its labels too.
FINE_TUNE="--pretrain_data $DATA/fashion_mnist --data $DATA/mnist --output_dir $KEYS/fine_tune --key_dir $KEYS/mnist \
  --architectures resnet vit"
$PYTHON docs/fine_tune/fine_tune.py $FINE_TUNE --students 4 1 label --label_only true \
  --results_file docs/fine_tune/fashion_to_mnist.json
#    Then the same checkpoint and key with T = 1, the true class left out and the controlled λ, judged by the key
#    extended to 32 references too (the plain twins are the run above's).
$PYTHON docs/fine_tune/fine_tune.py $FINE_TUNE --second_key_dir "$KEYS/mnist_r32" \
  --plain false --students 4 --ingrain_temperature 1 --ingrain_exclude_label true --ingrain_lambda_mode auto \
  --results_file docs/fine_tune/fashion_to_mnist_t1_exclude_auto.json

# 3. The same 6,000 images as in 1, T = 1, the true class left out and the controlled λ, on 0.2.0's 150-step key
#    (made here from the 6,000 images) and the same key extended to 32 references.
KEY150="--key_dir $KEYS/fashion_mnist_150 --ingrainer_steps 150 --second_key_dir $KEYS/fashion_mnist_150_r32"
T1="--plain false --ingrain_temperature 1 --ingrain_exclude_label true --ingrain_lambda_mode auto"
$PYTHON docs/arch_cost/arch_cost.py --data "$DATA/fashion_mnist" --train_size 6000 --architectures resnet convnext \
  $KEY150 $T1 --results_file $OUT/fashion6k_t1_exclude_auto.json
$PYTHON docs/arch_cost/arch_cost.py --data "$DATA/fashion_mnist" --train_size 6000 --architectures vit \
  $KEY150 $T1 --results_file $OUT/fashion6k_vit_t1_exclude_auto.json

# 4. fashion_mnist, the owner's whole split, 3 epochs, the defaults, the key of 3: plain twin, model, T = 4 student,
#    verified from scores and from labels only.
for architecture in resnet convnext vit; do
  $PYTHON docs/arch_cost/arch_cost.py --data "$DATA/fashion_mnist" --architectures $architecture $KEY150 \
    --students 4 --label_only true --results_file $OUT/fashion_full_$architecture.json
done

# 5. The same whole split and models as 4 (the model trained again by the same recipe): students at T = 1 and from
#    labels only, and an independent model trained on the attacker's images.
for architecture in resnet convnext vit; do
  $PYTHON docs/arch_cost/arch_cost.py --data "$DATA/fashion_mnist" --architectures $architecture $KEY150 \
    --plain false --students 1 label --num_independent 1 --label_only true \
    --results_file $OUT/fashion_full_${architecture}_students.json
done

# 6. Text, the official text script's path (a WordPiece tokenizer trained on the owner's texts, a BERT of width 128
#    from config, 4 epochs), every model verified with the runner-up test and the scores protocol, 16 and 32
#    references: 23,000 health_tweets (16 classes) with students at T = 4, T = 1 and from labels only, the models
#    also judged by three keys they never saw, then attacked (fine-tuning, pruning, quantisation, weight noise), and an
#    independent model (another party's tokenizer and texts); 4,000 rotten_tomatoes reviews (two classes) with the
#    defaults, an independent model and three students, T = 1, λ = 0.1 and both; and the defaults fine-tuned from a
#    BERT checkpoint trained on the tweets (plain twin, independent model, three students; a key of their own).
TEXT="--hidden_size 128 --learning_rate 1e-3 --ingrainer_steps 150 --seeds 0 1 2"
TWEETS="--data $DATA/health_tweets --train_size 23000 --key_dir $KEYS/health_tweets \
  --second_key_dir $KEYS/health_tweets_r32 $TEXT"
$PYTHON docs/strength/text_strength.py $TWEETS --modes plain fixed --students 4 label \
  --results_file docs/strength/health_tweets_23k_h128_scores.json
$PYTHON docs/strength/text_strength.py $TWEETS --modes fixed --students 1 --other_key_seeds 1 2 3 \
  --results_file docs/strength/health_tweets_23k_h128_t1_other_keys.json
$PYTHON docs/strength/text_strength.py $TWEETS --modes fixed independent \
  --attacks finetune_FTAL finetune_ls_0.1 prune_50 quantize_4bit noise_0.1 \
  --results_file docs/strength/health_tweets_23k_h128_attacks.json
REVIEWS_DATA="--data $DATA/rotten_tomatoes --train_size 4000 $TEXT"
REVIEWS="$REVIEWS_DATA --key_dir $KEYS/rotten_tomatoes --second_key_dir $KEYS/rotten_tomatoes_r32"
$PYTHON docs/strength/text_strength.py $REVIEWS --modes plain fixed independent \
  --results_file docs/strength/rotten_tomatoes.json
$PYTHON docs/strength/text_strength.py $REVIEWS --modes fixed --students 4 1 label \
  --results_file docs/strength/rotten_tomatoes_students.json
$PYTHON docs/strength/text_strength.py $REVIEWS --modes fixed --ingrain_temperature 1 \
  --results_file docs/strength/rotten_tomatoes_t1.json
$PYTHON docs/strength/text_strength.py $REVIEWS --modes fixed --ingrain_lambda 0.1 \
  --results_file docs/strength/rotten_tomatoes_lambda01.json
$PYTHON docs/strength/text_strength.py $REVIEWS --modes fixed --ingrain_temperature 1 --ingrain_lambda 0.1 \
  --results_file docs/strength/rotten_tomatoes_t1_lambda01.json
$PYTHON docs/strength/text_strength.py $REVIEWS_DATA --pretrain_data "$DATA/health_tweets" \
  --pretrained_dir "$KEYS/health_tweets_checkpoint" --key_dir "$KEYS/rotten_tomatoes_from_tweets" \
  --second_key_dir "$KEYS/rotten_tomatoes_from_tweets_r32" --modes plain fixed independent --students 4 1 label \
  --results_file docs/strength/rotten_tomatoes_from_tweets.json

# 7. The attacks that matter most on the owner's whole split (the benchmark grid's CNN), 3 seeds.
$PYTHON -m hf_ingrain.cli benchmark --config recipes/benchmark_configs/fashion_mnist_attacks.yaml \
  --dataset "$DATA/fashion_mnist" --seeds 0 1 2 --output "$KEYS/fashion_attacks" --num_proc 1
