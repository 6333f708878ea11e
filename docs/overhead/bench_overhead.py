r"""
Seconds per epoch and test accuracy of `IngrainTrainer` against a plain `Trainer`, measured side by side in one run.

Reads the same `--config` files and flags as `ingrain.py`, so it measures exactly the setting a recipe trains:

    # CPU: the embedded 5,000 MNIST digits and the small CNN
    python docs/overhead/bench_overhead.py --config recipes/configs/mnist5k_small_cnn_cpu.yaml --num_train_epochs 5

    # one GPU (or CPU): full MNIST and the recipe's ResNet, from the Hub or a local parquet copy of ylecun/mnist
    python docs/overhead/bench_overhead.py --config recipes/configs/mnist_resnet.yaml --repeats 1 \
        --results_file outputs/bench_overhead_mnist_resnet.json

Three configurations are trained from the same initial weights with the same training arguments: a plain
`transformers.Trainer`, `IngrainTrainer` (the ingrainer runs on every batch) and `IngrainTrainer` with
`ingrain_cache_logits=True` (its logits are computed once before training; that one-off pass is included in the
timing). Each is run `--repeats` times, interleaved, and the median is used, so that a slow moment of the machine hits
all alike. Printed: seconds per epoch, the ratios to the plain Trainer (targets: at most 1.40 without the cache, 1.10
with it), and the test accuracy and ingrain verification of each trained model. The plain Trainer's model is the
control: it never saw the key, so it must not verify.

The key is loaded from `--key_dir` when one is there (use the recipe's key to measure the accuracy cost of that very
setting); otherwise a throwaway key is drawn from `--key_seed` (default 0) and its ingrainer trained in memory, never
saved. Checkpoints, evaluation and logging are switched off: only training is timed. One process only.
"""

import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

import torch
import transformers
from transformers import Trainer, TrainingArguments, set_seed

import hf_ingrain
from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey, verify
from hf_ingrain.files import write_json
from hf_ingrain.keys import KEY_FILE
from hf_ingrain.scripts import DataArguments, IngrainParser, IngrainScriptArguments, ModelArguments
from hf_ingrain.verification import format_p_value

logger = logging.getLogger(__name__)

KINDS = ("trainer", "ingrain", "ingrain+cache")
TARGETS = {"ingrain": 1.40, "ingrain+cache": 1.10}


@dataclass
class BenchArguments:
    r"""
    Arguments of `bench_overhead.py`.

    Args:
        repeats (`int`, *optional*, defaults to 3):
            Runs of each configuration (interleaved); the median time is reported.
        augment (`bool`, *optional*, defaults to `False`):
            A random augmentation in the training data's `set_transform` (every image shifted by up to 2 pixels), as
            the image-classification script has: the ingrainer must then run on every batch, and the logits cache
            (which needs a deterministic pipeline) is not measured.
        results_file (`str`, *optional*):
            Also write the measurements to this JSON file.
    """

    repeats: int = field(default=3, metadata={"help": "Runs of each configuration (interleaved); median reported."})
    augment: bool = field(
        default=False,
        metadata={"help": "Shift every training image by up to 2 pixels at random, in set_transform (no logits cache)."},
    )
    results_file: str | None = field(default=None, metadata={"help": "Also write the measurements to this JSON file."})


def timing_arguments(training_args: IngrainConfig, output_dir: str, cache_logits: bool) -> dict:
    """The recipe's training arguments with everything but training switched off."""
    values = {name: getattr(training_args, name) for name, f in training_args.__dataclass_fields__.items() if f.init}
    values.update(
        output_dir=output_dir, save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, push_to_hub=False, resume_from_checkpoint=None, ingrain_cache_logits=cache_logits,
    )
    return values


def run_once(kind, model_args, splits, key, training_args, input_shape, id2label) -> dict:
    """Trains one model of `kind` from the recipe's seed; returns seconds per epoch, accuracy and verification."""
    set_seed(training_args.seed)
    model = model_args.build(key.num_labels, input_shape, id2label)
    with tempfile.TemporaryDirectory() as output_dir:
        values = timing_arguments(training_args, output_dir, cache_logits=(kind == "ingrain+cache"))
        start = time.perf_counter()
        if kind == "trainer":
            trainer_fields = TrainingArguments.__dataclass_fields__
            args = TrainingArguments(**{k: v for k, v in values.items() if k in trainer_fields})
            trainer = Trainer(model=model, args=args, train_dataset=splits["owner"])
        else:
            trainer = IngrainTrainer(
                model=model, args=IngrainConfig(**values), train_dataset=splits["owner"], ingrainer=key
            )
        trainer.train()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        epochs = trainer.state.epoch
    result = verify(trainer.model, key, splits["test"], batch_size=training_args.per_device_eval_batch_size)
    return {
        "seconds_per_epoch": seconds / epochs,
        "epochs": epochs,
        "test_accuracy": result.details.get("accuracy"),
        "agreement": result.agreement,
        "null_rate": result.null_rate,
        "p_value": result.p_value,
        "verified": result.verified,
    }


def with_random_shifts(dataset, seed: int):
    """`dataset` with every image shifted by up to 2 pixels at random each time it is read (a `set_transform`)."""
    generator = torch.Generator().manual_seed(seed)
    dataset = dataset.with_format(None)

    def shift(batch):
        pixels = torch.as_tensor(batch["pixel_values"], dtype=torch.float32)
        shifts = torch.randint(-2, 3, (len(pixels), 2), generator=generator)
        batch["pixel_values"] = [image.roll(tuple(s.tolist()), dims=(1, 2)) for image, s in zip(pixels, shifts)]
        batch["labels"] = torch.as_tensor(batch["labels"])
        return batch

    return dataset.with_transform(shift)


def get_key(script_args: IngrainScriptArguments, splits, num_labels: int, input_shape, show_progress: bool) -> WatermarkKey:
    if script_args.key_dir and os.path.isfile(os.path.join(script_args.key_dir, KEY_FILE)):
        logger.info("Using the key in %s", script_args.key_dir)
        return WatermarkKey.load(script_args.key_dir)
    seed = 0 if script_args.key_seed is None else script_args.key_seed
    logger.info("No key in --key_dir: drawing a throwaway key from seed %d (kept in memory only)", seed)
    return script_args.draw_key(splits["owner"], num_labels, input_shape, seed=seed, show_progress=show_progress)


def main(args: list[str] | None = None) -> dict:
    """Runs the benchmark on `args` (default: the command line); prints the table and returns the measurements."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # before the training arguments try to join a process group
        raise ValueError("bench_overhead.py measures one process; run it with `python`, not a distributed launcher.")
    # the recipe's own arguments too, so that its YAML files load unchanged
    parser = IngrainParser([IngrainScriptArguments, BenchArguments, DataArguments, ModelArguments, IngrainConfig])
    script_args, bench_args, data_args, model_args, training_args = parser.parse_args_and_config(args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.logging.set_verbosity_warning()
    if bench_args.repeats < 1:
        raise ValueError(f"`--repeats` must be at least 1, got {bench_args.repeats}.")

    splits = data_args.load_splits(training_args)
    label_feature = splits["owner"].features["labels"]
    num_labels, input_shape = len(label_feature.names), tuple(splits["owner"][0]["pixel_values"].shape)
    key = get_key(script_args, splits, num_labels, input_shape, show_progress=not training_args.disable_tqdm)
    id2label = dict(enumerate(label_feature.names))

    kinds = KINDS
    if bench_args.augment:
        splits["owner"] = with_random_shifts(splits["owner"], training_args.seed)
        kinds = KINDS[:2]  # the cache needs a deterministic pipeline
    runs = {kind: [] for kind in kinds}
    for repeat in range(bench_args.repeats):
        for kind in kinds:  # interleaved, so that a slow moment of the machine hits every configuration
            runs[kind].append(run_once(kind, model_args, splits, key, training_args, input_shape, id2label))
            logger.info("repeat %d, %s: %.2f s/epoch", repeat + 1, kind, runs[kind][-1]["seconds_per_epoch"])

    median = {kind: statistics.median(r["seconds_per_epoch"] for r in runs[kind]) for kind in kinds}
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    else:
        device = f"CPU ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"
    results = {
        "device": device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "hf_ingrain": hf_ingrain.__version__,
        "command": sys.argv[1:] if args is None else list(args),
        "dataset": data_args.dataset,
        "model_type": model_args.model_type,
        "num_train_examples": len(splits["owner"]),
        "repeats": bench_args.repeats,
        "seconds_per_epoch": median,
        "augment": bench_args.augment,
        "ratios": {kind: median[kind] / median["trainer"] for kind in kinds[1:]},
        "runs": runs,
    }

    print(
        f"{model_args.model_type} on {data_args.dataset} ({len(splits['owner'])} training examples"
        f"{', random shifts' if bench_args.augment else ''}), {device}, median of {bench_args.repeats}"
    )
    print(f"  {'':14s} {'s/epoch':>8s}  {'ratio':>5s}  {'test acc':>8s}  {'agreement':>9s}  {'null':>5s}  verified")
    for kind in kinds:
        last = runs[kind][-1]
        ratio = results["ratios"].get(kind, 1.0)
        target = f" (target <= {TARGETS[kind]:.2f})" if kind in TARGETS else ""
        print(
            f"  {kind:14s} {median[kind]:8.3f}  {ratio:5.2f}  {last['test_accuracy']:8.4f}  {last['agreement']:9.3f}  "
            f"{last['null_rate']:5.3f}  {str(last['verified']):5s} (p {format_p_value(last['p_value'])}){target}"
        )
    if bench_args.results_file:
        write_json(bench_args.results_file, results, sort_keys=True)  # creates the folder; whole or not at all
        print(f"Wrote {bench_args.results_file}")
    return results


if __name__ == "__main__":
    main()
