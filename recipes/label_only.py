r"""
Verification through labels alone, measured: an ingrained model, its students (soft labels at T = 4, hard labels) and
independent models, tested with the runner-up protocol and with the label-only protocols at several query budgets.

    # the embedded 5,000 digits, about 6 minutes on 2 CPU cores (the README's table)
    python recipes/label_only.py --output_dir outputs/label_only

    # full MNIST (a local parquet copy of ylecun/mnist), the budgets of the label-only issue (the README's table)
    python recipes/label_only.py --dataset /path/to/mnist --ingrainer_steps 600 --num_reference_keys 16 \
        --epochs 3 --budgets 1000 5000 10000 30000 --output_dir outputs/label_only_full

    # the same at the issue's standard: three keys, students at T = 1 and 4, ten independent models (every third
    # label-smoothed) and, for each key, the models ingrained with the other keys
    python recipes/label_only.py --dataset /path/to/mnist --ingrainer_steps 600 --num_reference_keys 16 \
        --epochs 3 --budgets 1000 5000 10000 30000 --key_seeds 0 1 2 --student_temperatures 1 4 \
        --num_independent 10 --output_dir outputs/label_only_3keys

Each key (seeds `--key_seeds`) is spread over the owner split; the owner's model (small CNN) is trained on it with the
ingrain term; the students learn that model's logits (at each of `--student_temperatures`) or its top-1 labels on the
attacker split, which never overlaps the owner's; the independent models are plain small CNNs on either split (every
third with label smoothing 0.1), and for each key the models ingrained with the other keys are independent too. Each
is verified on the test split (then the owner split, for budgets beyond it), for each budget, with `protocol="ingrain"`
(the runner-up, one query per image: all scores exposed, then only the two highest), `"ingrain_labels"` with the
occlusion and noise ladders and `"ingrain_errors"`, each sending at most that many queries; the results are written
after every suspect, so a run stopped early keeps what it measured. Writes `label_only.json` (every result) and `label_only.md` (agreement vs null rate, p-value).
"""

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
from hf_ingrain.models import build_classifier
from hf_ingrain.scripts import DataArguments, IngrainParser
from hf_ingrain.verification import format_p_value

logger = logging.getLogger(__name__)
SCORE_ROUTES = {  # name: verify() arguments, the suspect's scores exposed (all, or its two highest)
    "runner-up (scores)": dict(),
    "runner-up (top-2)": dict(scores="top_k", top_k=2),
}
ROUTES = {  # name: verify() arguments, labels only
    "labels, occlusion": dict(protocol="ingrain_labels", ladder="occlusion"),
    "labels, noise": dict(protocol="ingrain_labels", ladder="noise"),
    "labels, errors": dict(protocol="ingrain_errors"),
}


@dataclass
class LabelOnlyArguments:
    r"""
    Arguments of `label_only.py`.

    Args:
        key_seeds (`list[int]`): seeds of the keys. ingrainer_steps (`int`), num_reference_keys (`int`): their training.
        epochs (`float`): epochs of every model and student. student_temperatures (`list[float]`): the soft-label
            students' temperatures. num_independent (`int`): independent models (every third label-smoothed).
        budgets (`list[int]`): the most queries each label-only test may send.
        output_dir (`str`): where the results go.
    """

    key_seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Seeds of the keys."})
    ingrainer_steps: int = field(default=300, metadata={"help": "Training steps of each ingrainer."})
    num_reference_keys: int = field(default=6, metadata={"help": "Reference ingrainers (the key-draw test)."})
    epochs: float = field(default=6, metadata={"help": "Epochs of every model and student."})
    student_temperatures: list[float] = field(default_factory=lambda: [4.0], metadata={"help": "Soft students' T."})
    num_independent: int = field(
        default=2, metadata={"help": "Independent models (plain small CNNs, every third with label smoothing 0.1)."}
    )
    budgets: list[int] = field(default_factory=lambda: [3_000, 10_000], metadata={"help": "Query budgets of the label tests."})
    output_dir: str = field(default="outputs/label_only", metadata={"help": "Where the results go."})


def _model(seed, shape):
    torch.manual_seed(seed)
    return build_classifier("small_cnn", num_labels=10, input_shape=shape, hidden_sizes=[8, 16], hidden_size=32)


def _train(model, data, epochs, seed, ingrainer=None, label_smoothing=0.0):
    with tempfile.TemporaryDirectory() as scratch:
        kwargs = dict(output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=64, learning_rate=3e-3,
                      report_to="none", use_cpu=not torch.cuda.is_available(), save_strategy="no", disable_tqdm=True,
                      logging_strategy="no", seed=seed, label_smoothing_factor=label_smoothing)
        if ingrainer is None:
            Trainer(model=model, args=TrainingArguments(**kwargs), train_dataset=data).train()
        else:
            IngrainTrainer(model=model, args=IngrainConfig(**kwargs), train_dataset=data, ingrainer=ingrainer).train()
    return model.eval()


def main(args: LabelOnlyArguments, data_args: DataArguments) -> dict:
    splits = data_args.load_splits()
    owner, attacker = splits["owner"], splits["attacker"]
    shape = tuple(owner[0]["pixel_values"].shape)
    keys, teachers = {}, {}
    for index, seed in enumerate(args.key_seeds):
        keys[seed] = WatermarkKey.generate(10, shape, 100, seed=seed)
        keys[seed].train_ingrainer(
            benign_dataset=owner, num_steps=args.ingrainer_steps, num_reference_keys=args.num_reference_keys
        )
        teachers[seed] = _train(_model(1 + 100 * index, shape), owner, args.epochs, 1 + 100 * index, keys[seed])
    independent = {
        f"independent {i}" + (", label smoothing" if i % 3 == 2 else ""): _train(
            _model(10 + i, shape), (attacker, owner)[i % 2], args.epochs, 10 + i, label_smoothing=0.1 * (i % 3 == 2)
        )
        for i in range(args.num_independent)
    }
    queries = concatenate_datasets([splits["test"], owner])  # the test split first, the owner's images beyond it
    rows = []
    for index, (seed, key) in enumerate(keys.items()):
        derived = {"ingrained": teachers[seed]}
        for output, temperature in [("logits", t) for t in args.student_temperatures] + [("label", None)]:
            name = f"student, T = {temperature:g}" if output == "logits" else "student, hard labels"
            derived[name] = ExtractionAttack(
                teachers[seed], queries="data", num_queries=len(attacker), images=attacker, teacher_output=output,
                temperature=temperature or 4.0, num_train_epochs=args.epochs, learning_rate=3e-3,
                seed=3 + 100 * index, student=_model(3 + 100 * index, shape),
            ).run()
        others = {f"ingrained with key {other}": teachers[other] for other in keys if other != seed}
        suspects = [(name, model, True) for name, model in derived.items()]
        suspects += [(name, model, False) for name, model in {**independent, **others}.items()]
        for name, model, is_derived in suspects:
            common = {"key_seed": seed, "model": name, "derived": is_derived}
            for budget in args.budgets:  # one query per image: the first `budget` images
                for route, kwargs in SCORE_ROUTES.items():
                    result = verify(model, key, queries.select(range(min(budget, len(queries)))), **kwargs)
                    rows.append({**common, "test": route, "budget": budget, **_summary(result)})
                for route, kwargs in ROUTES.items():
                    result = verify(model, key, queries, max_queries=budget, **kwargs)
                    rows.append({**common, "test": route, "budget": budget, **_summary(result)})
                    logger.info("key %d / %s / %s / %d: %s", seed, name, route, budget, result)
            results = _write(args, data_args, keys, rows)  # after every suspect: a long run that stops keeps its rows
    print(report(rows))
    return results


def _write(args, data_args, keys, rows) -> dict:
    commitments = {str(seed): key.commitment() for seed, key in keys.items()}
    results = {"arguments": vars(args), "dataset": data_args.dataset, "key_commitments": commitments, "rows": rows}
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "label_only.json"), results)
    write_text(os.path.join(args.output_dir, "label_only.md"), report(rows))
    return results


def false_claims(rows: list[dict]) -> str:
    """Per test and budget: the independent (model, key) pairs, how many verified (false claims), the smallest p."""
    lines = ["| test | budget | independent pairs | false claims | smallest p-value |", "|---|---|---|---|---|"]
    groups = dict.fromkeys((row["test"], row["budget"]) for row in rows if not row["derived"])
    for test, budget in groups:
        pairs = [row for row in rows if not row["derived"] and row["test"] == test and row["budget"] == budget]
        smallest = min(row["p_value"] for row in pairs)
        lines.append(f"| {test} | {budget} | {len(pairs)} | {sum(row['verified'] for row in pairs)} | "
                     f"{format_p_value(smallest, spec='.1e')} |")
    return "\n".join(lines) + "\n"


ACCESS_LEVELS = {  # row of the access-level table: the test it runs
    "logits (every score)": "runner-up (scores)",
    "top-2 scores": "runner-up (top-2)",
    "label (and its score), occlusion ladder": "labels, occlusion",
    "label (and its score), error route": "labels, errors",
}


def access_levels(rows: list[dict]) -> str:
    """Per access level (the test it allows) and derived model: the fewest queries, among the budgets measured, at
    which the model of every key verifies (with the largest p-value there), or how many keys verify at the largest."""
    models = list(dict.fromkeys(row["model"] for row in rows if row["derived"]))
    lines = ["Queries at which every key's model verifies (the largest p-value of the keys there):", "",
             "| what the suspect answers | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for level, test in ACCESS_LEVELS.items():
        cells = []
        for model in models:
            by_budget = {}
            for row in rows:
                if row["model"] == model and row["test"] == test:
                    by_budget.setdefault(row["budget"], []).append(row)
            if not by_budget:
                cells.append("-")
                continue
            passed = [b for b, group in sorted(by_budget.items()) if all(row["verified"] for row in group)]
            if passed:
                worst = max(row["p_value"] for row in by_budget[passed[0]])
                cells.append(f"{passed[0]:,} ({format_p_value(worst, relation=False, spec='.0e')})")
            else:
                largest = max(by_budget)
                verified = sum(row["verified"] for row in by_budget[largest])
                cells.append(f"not within {largest:,} ({verified}/{len(by_budget[largest])} keys)")
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _summary(result) -> dict:
    details = result.details
    return {"agreement": result.agreement, "null_rate": result.null_rate, "p_value": result.p_value,
            "verified": result.verified, "compared": result.num_queries,
            "queries_sent": details.get("queries_sent", result.num_queries)}


def report(rows: list[dict]) -> str:
    """`label_only.md`: the queries each access level needs, the false claims, then every result."""
    return "\n".join([access_levels(rows), false_claims(rows), table(rows)])


def table(rows: list[dict]) -> str:
    lines = ["| key | model | test | budget | queries sent | compared | agreement vs null | p-value |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        mark = "✅" if row["verified"] else "❌"
        lines.append(
            f"| {row['key_seed']} | {row['model']} | {row['test']} | {row['budget']} | {row['queries_sent']} | "
            f"{row['compared']} | "
            f"{row['agreement']:.3f} vs {row['null_rate']:.3f} | {mark} {format_p_value(row['p_value'], spec='.1e')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = IngrainParser([LabelOnlyArguments, DataArguments])
    main(*parser.parse_args_and_config())
