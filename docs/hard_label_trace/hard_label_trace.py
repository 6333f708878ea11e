r"""
What strengthens the trace a hard-label thief keeps, measured: ingrained small CNNs trained with several weights of the
ingrain term, with and without more of it on the examples the model is least sure of, and the students that learn
their top-1 labels. One command gives the table of `docs/hard_label_trace/README.md` (the label-only issue's third
item):

    # full MNIST (a local parquet copy of ylecun/mnist), 2 seeds: 74 minutes on 2 CPU cores shared with two other runs
    python docs/hard_label_trace/hard_label_trace.py --dataset /path/to/mnist --output_dir outputs/hard_label_trace

    # the embedded 5,000 digits, a few minutes
    python docs/hard_label_trace/hard_label_trace.py --variants 0.5:0 0.5:3 --seeds 0 --budget 2000

A variant `LAMBDA:WEIGHT` trains with `ingrain_lambda=LAMBDA` and multiplies each example's ingrain term by
`1 + WEIGHT * (1 - p_y)`, `p_y` the model's current probability of the true class (not differentiated), divided by
the batch's mean of these factors: the same total pull, moved towards the examples the model is least sure of, which
are where a model errs, and its errors are what a hard-label student learns of the watermark. The owner's model learns
the owner split; its student (same architecture, fresh weights) learns its top-1 labels on the attacker split; an
independent model learns the attacker split without any key. Each is measured on the test split then the owner's
images: accuracy, how many it gets wrong, and the share of its wrong labels that are the key's choice among the other
classes (what the error route counts); and `verify(protocol="ingrain_errors", max_queries=budget)`. The key has no
reference ingrainers (`--num_reference_keys 0`, the default here), so its p-value is the binomial test's alone: it
compares the variants; `label_only.py` gives the full test. Writes `hard_label_trace.json` and `hard_label_trace.md`
(the means over seeds, then every row).
"""

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field

import torch
from datasets import concatenate_datasets
from transformers import Trainer, TrainingArguments

from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey, verify
from hf_ingrain.attacks import ExtractionAttack
from hf_ingrain.files import write_json, write_text
from hf_ingrain.verification.statistics import runner_up
from hf_ingrain.models import build_classifier
from hf_ingrain.scripts import DataArguments, IngrainParser
from hf_ingrain.suspects import collect_scores
from hf_ingrain.verification import format_p_value

logger = logging.getLogger(__name__)


@dataclass
class TraceArguments:
    r"""
    Arguments of `hard_label_trace.py`.

    Args:
        variants (`list[str]`): `LAMBDA:WEIGHT` pairs (see the module docstring).
        seeds (`list[int]`): seeds of the models (the key is the same for all).
        key_seed (`int`), ingrainer_steps (`int`), num_reference_keys (`int`): the key and its training.
        epochs (`float`): epochs of every model and student.
        budget (`int`): the most queries the error route sends.
        output_dir (`str`): where the results go.
    """

    variants: list[str] = field(
        default_factory=lambda: ["0.35:0", "0.5:0", "0.7:0", "0.35:3", "0.5:3"],
        metadata={"help": "LAMBDA:WEIGHT pairs: the ingrain weight, and how much more of it goes to uncertain examples."},
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata={"help": "Seeds of the models."})
    key_seed: int = field(default=0, metadata={"help": "Seed of the key."})
    ingrainer_steps: int = field(default=600, metadata={"help": "Training steps of the key's ingrainer."})
    num_reference_keys: int = field(default=0, metadata={"help": "Reference ingrainers (0: the binomial test alone)."})
    epochs: float = field(default=3, metadata={"help": "Epochs of every model and student."})
    budget: int = field(default=10_000, metadata={"help": "The most queries the error route sends."})
    output_dir: str = field(default="outputs/hard_label_trace", metadata={"help": "Where the results go."})

    def __post_init__(self):
        self.parsed = [parse_variant(variant) for variant in self.variants]


def parse_variant(text: str) -> tuple[float, float]:
    """`"0.5:3"` -> `(0.5, 3.0)`, refused with the expected form if it is anything else."""
    try:
        ingrain_lambda, weight = (float(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"A variant is LAMBDA:WEIGHT (e.g. 0.5:3), got {text!r}.") from None
    if ingrain_lambda < 0 or weight < 0:
        raise ValueError(f"LAMBDA and WEIGHT must be >= 0, got {text!r}.")
    return ingrain_lambda, weight


class UncertaintyWeightedTrainer(IngrainTrainer):
    """`IngrainTrainer` whose per-example ingrain term is scaled by `1 + w (1 - p_y)`, normalised to mean 1 per batch."""

    uncertainty_weight = 0.0

    def ingrain_loss(self, logits, ingrainer_logits, labels=None):
        per_example = super().ingrain_loss(logits, ingrainer_logits, labels)
        if not self.uncertainty_weight or labels is None:
            return per_example
        doubt = 1 - logits.detach().softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        factors = 1 + self.uncertainty_weight * doubt
        return per_example * factors / factors.mean()


def small_cnn(seed: int, shape) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_classifier("small_cnn", num_labels=10, input_shape=shape, hidden_sizes=[8, 16], hidden_size=32)


def train(model, data, epochs: float, seed: int, key=None, ingrain_lambda=0.5, weight=0.0):
    """label_only.py's training (batch 64, learning rate 3e-3), with the weighted ingrain term when `key` is given."""
    with tempfile.TemporaryDirectory() as scratch:
        common = dict(output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=64, learning_rate=3e-3,
                      report_to="none", use_cpu=not torch.cuda.is_available(), save_strategy="no", disable_tqdm=True,
                      logging_strategy="no", seed=seed)
        if key is None:
            Trainer(model=model, args=TrainingArguments(**common), train_dataset=data).train()
        else:
            trainer = UncertaintyWeightedTrainer(model=model, args=IngrainConfig(**common, ingrain_lambda=ingrain_lambda),
                                                 train_dataset=data, ingrainer=key)
            trainer.uncertainty_weight = weight
            trainer.train()
    return model.eval()


def errors_towards_key(model, key, queries, key_scores) -> dict:
    """Accuracy, the number of wrong answers, and the share of them that are the key's choice among the other classes."""
    scores, labels = collect_scores(model, queries, batch_size=1024)
    predictions = scores.argmax(-1)
    wrong = predictions != labels
    choice = runner_up(key_scores, labels)
    return {"accuracy": float((~wrong).float().mean()), "errors": int(wrong.sum()),
            "key_share": float((predictions[wrong] == choice[wrong]).float().mean())}


def measure(model, key, queries, key_scores, budget) -> dict:
    result = verify(model, key, queries, protocol="ingrain_errors", max_queries=budget)
    return {**errors_towards_key(model, key, queries, key_scores), "compared": result.num_queries,
            "agreement": result.agreement, "null_rate": result.null_rate, "p_value": result.p_value}


def main(args: TraceArguments, data_args: DataArguments) -> dict:
    splits = data_args.load_splits()
    owner, attacker = splits["owner"], splits["attacker"]
    shape = tuple(owner[0]["pixel_values"].shape)
    key = WatermarkKey.generate(10, shape, 100, seed=args.key_seed)
    key.train_ingrainer(benign_dataset=owner, num_steps=args.ingrainer_steps, num_reference_keys=args.num_reference_keys)
    queries = concatenate_datasets([splits["test"], owner])  # the test split first, as label_only.py
    key_scores = key.ingrainer_scores(queries, batch_size=1024)[0]
    rows = []
    for seed in args.seeds:
        independent = train(small_cnn(10 + 100 * seed, shape), attacker, args.epochs, 10 + 100 * seed)
        rows.append({"variant": "independent", "seed": seed, "model": "independent",
                     **measure(independent, key, queries, key_scores, args.budget)})
        for (ingrain_lambda, weight), name in zip(args.parsed, args.variants):
            owners = train(small_cnn(1 + 100 * seed, shape), owner, args.epochs, 1 + 100 * seed, key, ingrain_lambda,
                           weight)
            student = ExtractionAttack(owners, queries="data", num_queries=len(attacker), images=attacker,
                                       teacher_output="label", num_train_epochs=args.epochs, learning_rate=3e-3,
                                       seed=3 + 100 * seed, student=small_cnn(3 + 100 * seed, shape)).run()
            for kind, model in (("ingrained", owners), ("student, hard labels", student)):
                rows.append({"variant": name, "seed": seed, "model": kind,
                             **measure(model, key, queries, key_scores, args.budget)})
                logger.info("%s", json.dumps(rows[-1]))
            results = _write(args, data_args, key, rows)
    print(markdown(rows, args.budget))
    return results


def _write(args, data_args, key, rows) -> dict:
    results = {"arguments": {k: v for k, v in vars(args).items() if k != "parsed"}, "dataset": data_args.dataset,
               "key_commitment": key.commitment(), "rows": rows}
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "hard_label_trace.json"), results)
    write_text(os.path.join(args.output_dir, "hard_label_trace.md"), markdown(rows, args.budget))
    return results


def markdown(rows: list[dict], budget: int) -> str:
    """`hard_label_trace.md`: the means over seeds (the table of `docs/hard_label_trace/README.md`), then every row."""
    return means(rows) + "\n" + per_seed(rows, budget)


def means(rows: list[dict]) -> str:
    """Per variant and model, in the order measured: accuracy and the share of wrong answers on the key's choice,
    averaged over the seeds."""
    groups = {}
    for row in rows:
        groups.setdefault((row["variant"], row["model"]), []).append(row)
    lines = ["| variant (λ:weight) | model | seeds | accuracy (mean) | key's choice among its errors (mean) |",
             "|---|---|---|---|---|"]
    for (variant, model), group in groups.items():
        accuracy = sum(row["accuracy"] for row in group) / len(group)
        share = sum(row["key_share"] for row in group) / len(group)
        lines.append(f"| {variant} | {model} | {len(group)} | {accuracy:.3f} | {share:.2f} |")
    return "\n".join(lines) + "\n"


def per_seed(rows: list[dict], budget: int) -> str:
    lines = [f"| variant (λ:weight) | seed | model | accuracy | wrong answers | key's choice among them | error route, "
             f"{budget:,} queries: agreement vs null, p (binomial) |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['seed']} | {row['model']} | {row['accuracy']:.4f} | {row['errors']} | "
                     f"{row['key_share']:.3f} | {row['agreement']:.3f} vs {row['null_rate']:.3f} "
                     f"({row['compared']}), {format_p_value(row['p_value'], relation=False, spec='.1e')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = IngrainParser([TraceArguments, DataArguments])
    main(*parser.parse_args_and_config())
