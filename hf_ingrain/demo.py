"""`hf-ingrain demo`: the paper's experiment on the embedded data, end to end, in one command.

Key -> ingrainer -> an ingrained model and an unwatermarked reference -> verification of both, printed as a table
and written to a results folder (`results.json`, `results.md`).
"""

import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass

import torch
from transformers import Trainer, TrainingArguments

from .data import load_image_dataset
from .ingrain_config import IngrainConfig
from .ingrain_trainer import IngrainTrainer
from .keys import WatermarkKey
from .models import SmallCNNConfig, SmallCNNForImageClassification
from .verification import verify

logger = logging.getLogger(__name__)


@dataclass
class DemoSettings:
    """Scale of the demo; the defaults fit in a few minutes on 2 CPU cores."""

    dataset: str = "mnist-5k"
    seed: int = 0
    num_carriers: int = 100
    ingrainer_steps: int = 600
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    ingrain_lambdas: tuple = (0.5,)
    temperature: float = 4.0
    alpha: float = 1e-6


def small_cnn(num_labels: int, seed: int, **config) -> SmallCNNForImageClassification:
    torch.manual_seed(seed)
    return SmallCNNForImageClassification(SmallCNNConfig(num_labels=num_labels, **config))


def train_args(settings: DemoSettings, output_dir: str, seed: int, **extra) -> dict:
    return dict(
        output_dir=output_dir, num_train_epochs=settings.epochs, per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, report_to="none", save_strategy="no", logging_strategy="no",
        seed=seed, use_cpu=not torch.cuda.is_available(), **extra,
    )


def accuracy(model, dataset) -> float:
    from .verification import collect_scores

    scores, labels = collect_scores(model, dataset)
    return (scores.argmax(-1) == labels).float().mean().item()


def run_demo(settings: DemoSettings, output_dir: str, show_progress: bool = True) -> dict:
    """Runs the demo and writes `results.json` and `results.md` into `output_dir`; returns the results."""
    start = time.time()
    splits = load_image_dataset(settings.dataset, seed=settings.seed)
    num_labels = len(splits["owner"].features["labels"].names)
    input_shape = tuple(splits["owner"][0]["pixel_values"].shape)
    key = WatermarkKey.generate(num_labels, input_shape, settings.num_carriers, seed=settings.seed)
    key.train_ingrainer(benign_dataset=splits["owner"], num_steps=settings.ingrainer_steps, show_progress=show_progress)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        models = {}
        reference = small_cnn(num_labels, seed=settings.seed + 100)
        logger.info("Training the unwatermarked reference")
        Trainer(
            model=reference, args=TrainingArguments(**train_args(settings, scratch, settings.seed + 100)),
            train_dataset=splits["owner"],
        ).train()
        models["reference (no watermark)"] = reference
        for index, ingrain_lambda in enumerate(settings.ingrain_lambdas):
            model = small_cnn(num_labels, seed=settings.seed + 200 + index)
            args = IngrainConfig(
                **train_args(settings, scratch, settings.seed + 200 + index),
                ingrain_lambda=ingrain_lambda, ingrain_temperature=settings.temperature,
            )
            IngrainTrainer(model=model, args=args, train_dataset=splits["owner"], ingrainer=key).train()
            models[f"ingrain λ={ingrain_lambda:g}"] = model
        for name, model in models.items():
            result = verify(model, key, splits["test"], alpha=settings.alpha)
            rows.append(
                {
                    "model": name,
                    "test_accuracy": accuracy(model, splits["test"]),
                    "agreement": result.agreement,
                    "null_rate": result.null_rate,
                    "p_value": result.p_value,
                    "verified": result.verified,
                }
            )
    results = {
        "settings": settings.__dict__ | {"ingrain_lambdas": list(settings.ingrain_lambdas)},
        "rows": rows,
        "key_commitment": key.commitment(),
        "seconds": round(time.time() - start, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
    }
    write_results(results, output_dir)
    return results


def results_table(results: dict) -> str:
    lines = [
        "| model | test accuracy | agreement | null rate | p-value | verified |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['model']} | {row['test_accuracy']:.3f} | {row['agreement']:.3f} | {row['null_rate']:.3f} "
            f"| {row['p_value']:.2g} | {'yes' if row['verified'] else 'no'} |"
        )
    return "\n".join(lines)


def write_results(results: dict, output_dir: str) -> None:
    """Writes `results.json` and `results.md` atomically (temporary file, then rename)."""
    os.makedirs(output_dir, exist_ok=True)
    for name, text in (
        ("results.json", json.dumps(results, indent=2)),
        ("results.md", f"# hf_ingrain demo\n\n{results_table(results)}\n\n{results['machine']}, {results['seconds']} s\n"),
    ):
        with tempfile.NamedTemporaryFile("w", dir=output_dir, delete=False, suffix=".tmp") as f:
            f.write(text)
        os.replace(f.name, os.path.join(output_dir, name))


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="Run the paper's experiment on the embedded data and write a results table.",
        description="Key -> ingrainer -> ingrained model and reference -> verification, on the embedded MNIST sample.",
    )
    parser.add_argument("--output", default="results", help="Folder for results.json and results.md (default: results).")
    parser.add_argument("--dataset", default="mnist-5k", help="Data set: mnist-5k (embedded), a Hub id or a local folder.")
    parser.add_argument("--epochs", type=int, default=DemoSettings.epochs, help="Training epochs per model.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the demo key, the splits and the models.")
    parser.set_defaults(func=_run_from_cli)


def _run_from_cli(args) -> int:
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}.")
    settings = DemoSettings(dataset=args.dataset, epochs=args.epochs, seed=args.seed)
    results = run_demo(settings, args.output)
    print(results_table(results))
    print(f"\nWritten to {os.path.abspath(args.output)} in {results['seconds']} s.")
    return 0
