r"""
The false-positive rate of the ingrain test, measured: models that never saw a key, tested against it at several
query counts, with the statistics of `verify()`.

    # full MNIST (a local parquet copy of ylecun/mnist): 5 keys x 25 models, 1,000 / 10,000 / 30,000 queries
    python docs/false_positives/false_positives.py --dataset /path/to/mnist --output_dir outputs/false_positives

    # the same on the embedded 5,000 digits, in a few minutes (100 / 1,000 / 3,000 queries)
    python docs/false_positives/false_positives.py --dataset mnist-5k --query_counts 100 1000 3000 --epochs 5

For each key (its own seed, its ingrainer trained on the owner split) the suspects are models that never saw it:
small CNNs of two widths and seeds, trained on the attacker split or on the owner split (the very images the queries
come from), with label smoothing, a transformers ResNet, ensembles that average two or three of them, and models
ingrained with each of the *other* keys. Each model ingrained with a key is also tested against its own key, as the
test's power. The queries are the test split, then the owner split for counts beyond it, deduplicated; every count
uses the first `n` of that pool. Writes `false_positives.json` (every pair) and `false_positives.md` (the summary
table per query count: pairs, false claims at alpha, the largest agreement minus null rate, the smallest p-value).
"""

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field

import torch
from datasets import concatenate_datasets
from transformers import Trainer, TrainingArguments, set_seed

from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey
from hf_ingrain.verification.calibration import false_positive_table
from hf_ingrain.files import write_json, write_text
from hf_ingrain.models import build_classifier
from hf_ingrain.data.query_set import read_queries
from hf_ingrain.scripts import DataArguments, IngrainParser
from hf_ingrain.suspects import collect_scores
from hf_ingrain.verification import DEFAULT_ALPHA, format_p_value

logger = logging.getLogger(__name__)


@dataclass
class FalsePositiveArguments:
    r"""
    Arguments of `false_positives.py`.

    Args:
        num_keys (`int`, *optional*, defaults to 5): keys, seeds 0 to `num_keys - 1`.
        query_counts (`list[int]`, *optional*, defaults to `[1000, 10000, 30000]`): queries per test.
        epochs (`float`, *optional*, defaults to 3): training epochs of every suspect.
        ingrainer_steps (`int`, *optional*, defaults to 600): training steps of each key's ingrainer.
        num_reference_keys (`int`, *optional*, defaults to 16): reference ingrainers of each key, for the key-draw
            test of `verify`; 0 measures the binomial test alone.
        alpha (`float`, *optional*, defaults to 1e-6): the significance level of every test.
        output_dir (`str`, *optional*, defaults to `"outputs/false_positives"`): where the results go.
    """

    num_keys: int = field(default=5, metadata={"help": "Keys, seeds 0 to num_keys - 1."})
    query_counts: list[int] = field(default_factory=lambda: [1000, 10000, 30000], metadata={"help": "Queries per test."})
    epochs: float = field(default=3, metadata={"help": "Training epochs of every suspect."})
    ingrainer_steps: int = field(default=600, metadata={"help": "Training steps of each key's ingrainer."})
    num_reference_keys: int = field(default=16, metadata={"help": "Reference ingrainers of each key (key-draw test)."})
    alpha: float = field(default=DEFAULT_ALPHA, metadata={"help": "Significance level of every test."})
    output_dir: str = field(default="outputs/false_positives", metadata={"help": "Where the results go."})


# name -> (architecture, training split, seed, label smoothing): 19 models that never see any key, and 2 ensembles of them
INDEPENDENT = {
    **{f"cnn_s{seed}": ("small_cnn", "attacker", seed, 0.0) for seed in range(6)},
    **{f"cnn_narrow_s{seed}": ("narrow_cnn", "attacker", seed, 0.0) for seed in range(3)},
    **{f"cnn_owner_data_s{seed}": ("small_cnn", "owner", 10 + seed, 0.0) for seed in range(3)},
    **{f"cnn_smooth0.1_s{seed}": ("small_cnn", "attacker", 20 + seed, 0.1) for seed in range(2)},
    **{f"cnn_smooth0.2_owner_s{seed}": ("small_cnn", "owner", 22 + seed, 0.2) for seed in range(2)},
    **{f"resnet_s{seed}": ("resnet", "attacker", 30 + seed, 0.0) for seed in range(3)},
}
ENSEMBLES = {"ensemble_2": ["cnn_s0", "cnn_s1"], "ensemble_3": ["cnn_s2", "resnet_s0", "cnn_smooth0.1_s0"]}


def build(kind: str, input_shape, num_labels: int):
    sizes = {"small_cnn": dict(hidden_sizes=[16, 32], hidden_size=64), "narrow_cnn": dict(hidden_sizes=[8, 16], hidden_size=32),
             "resnet": dict(hidden_sizes=[16, 32], depths=[1, 1], embedding_size=16)}[kind]
    return build_classifier("resnet" if kind == "resnet" else "small_cnn", num_labels, tuple(input_shape), **sizes)


def training_arguments(output_dir: str, seed: int, epochs: float, **extra) -> dict:
    return dict(
        output_dir=output_dir, num_train_epochs=epochs, per_device_train_batch_size=128, learning_rate=2e-3,
        seed=seed, report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(), **extra,
    )


def train_independent(name, splits, input_shape, num_labels, epochs, scratch):
    kind, split, seed, smoothing = INDEPENDENT[name]
    set_seed(seed)
    model = build(kind, input_shape, num_labels)
    args = TrainingArguments(**training_arguments(scratch, seed, epochs, label_smoothing_factor=smoothing))
    Trainer(model=model, args=args, train_dataset=splits[split]).train()
    return model.eval()


def train_ingrained(key, splits, input_shape, num_labels, epochs, scratch, seed):
    set_seed(seed)
    model = build("small_cnn", input_shape, num_labels)
    args = IngrainConfig(**training_arguments(scratch, seed, epochs), ingrain_lambda=0.5, ingrain_temperature=4.0)
    IngrainTrainer(model=model, args=args, train_dataset=splits["attacker"], ingrainer=key).train()
    return model.eval()


def markdown(table: dict, args, seconds: float, dataset: str) -> str:
    lines = [
        f"# False positives of the ingrain test: {dataset}",
        "",
        "| queries | independent (model, key) pairs | false claims at alpha | false claims, binomial test alone | "
        "largest agreement - null rate | smallest p-value | ingrained models verified (own key) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table["summary"]:
        lines.append(
            f"| {row['num_queries']} | {row['independent_pairs']} | {row['false_claims']} | "
            f"{row['false_claims_binomial_only']} | {row['max_excess']:+.4f} | "
            f"{format_p_value(row['min_p_value'], relation=False)} | {row['derived_verified']} of {row['derived_pairs']} |"
        )
    lines += ["", f"alpha = {table['alpha']:g}; {args.num_keys} keys; {len(INDEPENDENT) + len(ENSEMBLES)} independent "
              f"models per key plus {args.num_keys - 1} ingrained with another key; {seconds:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    data_args, args = IngrainParser([DataArguments, FalsePositiveArguments]).parse_args_and_config(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.num_keys < 2:
        raise ValueError(f"`--num_keys` must be at least 2 (models ingrained with another key), got {args.num_keys}.")
    start = time.time()
    splits = data_args.load_splits()
    num_labels = splits["owner"].features["labels"].num_classes
    input_shape = tuple(splits["owner"][0]["pixel_values"].shape)
    pool = concatenate_datasets([splits["test"], splits["owner"]]) if max(args.query_counts) > len(splits["test"]) else splits["test"]
    keys = {}
    for seed in range(args.num_keys):
        logger.info("Training key_%d and its %d reference ingrainers", seed, args.num_reference_keys)
        key = WatermarkKey.generate(num_labels, input_shape, num_carriers=100, seed=seed)
        key.train_ingrainer(
            benign_dataset=splits["owner"], num_steps=args.ingrainer_steps, num_reference_keys=args.num_reference_keys,
        )
        keys[f"key_{seed}"] = key
    pool = read_queries(keys["key_0"], pool).deduplicated(pool)
    if max(args.query_counts) > len(pool):
        raise ValueError(f"The query pool has {len(pool)} distinct examples; lower `--query_counts`.")
    pool = pool.select(range(max(args.query_counts)))
    labels = collect_scores(lambda batch: torch.zeros(len(batch["pixel_values"]), num_labels), pool)[1]

    model_scores, derived = {}, []
    with tempfile.TemporaryDirectory() as scratch:
        for name in INDEPENDENT:
            logger.info("Training %s", name)
            model = train_independent(name, splits, input_shape, num_labels, args.epochs, scratch)
            model_scores[name] = collect_scores(model, pool, batch_size=1024)[0]
        for name, members in ENSEMBLES.items():
            model_scores[name] = torch.stack([model_scores[m].log_softmax(-1) for m in members]).mean(0)
        for index, (key_name, key) in enumerate(keys.items()):
            logger.info("Training a model ingrained with %s", key_name)
            model = train_ingrained(key, splits, input_shape, num_labels, args.epochs, scratch, seed=40 + index)
            model_scores[f"ingrained_{key_name}"] = collect_scores(model, pool, batch_size=1024)[0]
            derived.append((f"ingrained_{key_name}", key_name))
    answers = {name: key.ingrainer_scores(pool, batch_size=1024) for name, key in keys.items()}  # one pass a key
    key_scores = {name: scores for name, (scores, _) in answers.items()}
    reference_scores = {name: references for name, (_, references) in answers.items()}
    table = false_positive_table(
        model_scores, key_scores, labels, args.query_counts, args.alpha, derived, reference_scores
    )
    table["commitments"] = {name: key.commitment() for name, key in keys.items()}
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "false_positives.json"), table)
    text = markdown(table, args, time.time() - start, data_args.dataset)
    write_text(os.path.join(args.output_dir, "false_positives.md"), text)
    print(text)
    return table


if __name__ == "__main__":
    main()
