"""Seconds per epoch of IngrainTrainer against a plain Trainer, measured side by side in one run.

    python recipes/bench_overhead.py [--dataset mnist-5k] [--epochs 3] [--repeats 3] [--model small_cnn|resnet]

Prints one line per configuration and the ratios to the plain Trainer: without the logits cache (the ingrainer runs
on every batch) and with `ingrain_cache_logits=True` (its logits are computed once, before training; that one-off
pass is included in the timing). Targets: at most 1.40 without the cache, at most 1.10 with it. Each configuration
is run `--repeats` times interleaved, and the median is used, so that a slow moment of the machine hits all alike.
"""

import argparse
import statistics
import tempfile
import time

import torch
from transformers import AutoModelForImageClassification, ResNetConfig, Trainer, TrainingArguments

from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey
from hf_ingrain.data import load_image_dataset
from hf_ingrain.models import SmallCNNConfig, SmallCNNForImageClassification


def build_model(name: str, num_labels: int, channels: int):
    torch.manual_seed(0)
    if name == "resnet":
        config = ResNetConfig(num_channels=channels, embedding_size=32, hidden_sizes=[32, 64], depths=[1, 1], num_labels=num_labels)
        return AutoModelForImageClassification.from_config(config)
    return SmallCNNForImageClassification(SmallCNNConfig(num_channels=channels, num_labels=num_labels))


def time_run(kind: str, model_name: str, splits, key, epochs: int, batch_size: int) -> float:
    common = dict(
        num_train_epochs=epochs, per_device_train_batch_size=batch_size, learning_rate=1e-3, report_to="none",
        save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=not torch.cuda.is_available(), seed=0,
    )
    channels = splits["owner"][0]["pixel_values"].shape[0]
    model = build_model(model_name, key.num_labels, channels)
    with tempfile.TemporaryDirectory() as output_dir:
        start = time.perf_counter()
        if kind == "trainer":
            trainer = Trainer(model=model, args=TrainingArguments(output_dir, **common), train_dataset=splits["owner"])
        else:
            args = IngrainConfig(output_dir, ingrain_cache_logits=(kind == "ingrain+cache"), **common)
            trainer = IngrainTrainer(model=model, args=args, train_dataset=splits["owner"], ingrainer=key)
        trainer.train()
        return (time.perf_counter() - start) / epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--model", default="small_cnn", choices=["small_cnn", "resnet"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    splits = load_image_dataset(args.dataset)
    num_labels = len(splits["owner"].features["labels"].names)
    key = WatermarkKey.generate(num_labels, tuple(splits["owner"][0]["pixel_values"].shape), 100, seed=0)
    key.train_ingrainer(benign_dataset=splits["owner"], num_steps=100, show_progress=False)  # speed only

    kinds = ("trainer", "ingrain", "ingrain+cache")
    seconds = {kind: [] for kind in kinds}
    for _ in range(args.repeats):
        for kind in kinds:  # interleaved
            seconds[kind].append(time_run(kind, args.model, splits, key, args.epochs, args.batch_size))
    median = {kind: statistics.median(values) for kind, values in seconds.items()}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{args.model} on {args.dataset} ({len(splits['owner'])} examples), {device}, median of {args.repeats}")
    for kind in kinds:
        print(f"  {kind:14s} {median[kind]:7.3f} s/epoch")
    print(f"  ratio ingrain/trainer        {median['ingrain'] / median['trainer']:.2f}  (target <= 1.40)")
    print(f"  ratio ingrain+cache/trainer  {median['ingrain+cache'] / median['trainer']:.2f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
