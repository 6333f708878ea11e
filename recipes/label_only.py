r"""
Verification through labels alone, measured: an ingrained model, its students (soft labels at T = 4, hard labels) and
independent models, tested with the runner-up protocol and with the label-only protocols at several query budgets.

    # the embedded 5,000 digits, about 6 minutes on 2 CPU cores (the README's table)
    python recipes/label_only.py --output_dir outputs/label_only

    # full MNIST (a local parquet copy of ylecun/mnist), the budgets of the label-only issue
    python recipes/label_only.py --dataset /path/to/mnist --ingrainer_steps 600 --num_reference_keys 16 \
        --epochs 3 --budgets 1000 5000 10000 30000 --output_dir outputs/label_only_full

The key (seed `--key_seed`) is spread over the owner split; the owner's model (small CNN) is trained on it with the
ingrain term; the students learn that model's logits (T = 4) or its top-1 labels on the attacker split, which never
overlaps the owner's; the independent models are plain small CNNs on either split. Each is verified on the test split
(then the owner split, for budgets beyond it) with `protocol="ingrain"` (runner-up: 1 query per image) and, for each
budget, `"ingrain_labels"` with the occlusion and noise ladders and `"ingrain_errors"`, each sending at most that
many queries. Writes `label_only.json` (every result) and `label_only.md` (agreement vs null rate, p-value).
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
ROUTES = {  # name: verify() arguments
    "labels, occlusion": dict(protocol="ingrain_labels", ladder="occlusion"),
    "labels, noise": dict(protocol="ingrain_labels", ladder="noise"),
    "labels, errors": dict(protocol="ingrain_errors"),
}


@dataclass
class LabelOnlyArguments:
    r"""
    Arguments of `label_only.py`.

    Args:
        key_seed (`int`): seed of the key. ingrainer_steps (`int`), num_reference_keys (`int`): its training.
        epochs (`float`): epochs of every model and student. num_independent (`int`): independent models.
        budgets (`list[int]`): the most queries each label-only test may send.
        output_dir (`str`): where the results go.
    """

    key_seed: int = field(default=0, metadata={"help": "Seed of the key."})
    ingrainer_steps: int = field(default=300, metadata={"help": "Training steps of each ingrainer."})
    num_reference_keys: int = field(default=6, metadata={"help": "Reference ingrainers (the key-draw test)."})
    epochs: float = field(default=6, metadata={"help": "Epochs of every model and student."})
    num_independent: int = field(default=2, metadata={"help": "Independent models (plain small CNNs)."})
    budgets: list[int] = field(default_factory=lambda: [3_000, 10_000], metadata={"help": "Query budgets of the label tests."})
    output_dir: str = field(default="outputs/label_only", metadata={"help": "Where the results go."})


def _model(seed, shape):
    torch.manual_seed(seed)
    return build_classifier("small_cnn", num_labels=10, input_shape=shape, hidden_sizes=[8, 16], hidden_size=32)


def _train(model, data, epochs, seed, ingrainer=None):
    with tempfile.TemporaryDirectory() as scratch:
        kwargs = dict(output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=64, learning_rate=3e-3,
                      report_to="none", use_cpu=not torch.cuda.is_available(), save_strategy="no", disable_tqdm=True,
                      logging_strategy="no", seed=seed)
        if ingrainer is None:
            Trainer(model=model, args=TrainingArguments(**kwargs), train_dataset=data).train()
        else:
            IngrainTrainer(model=model, args=IngrainConfig(**kwargs), train_dataset=data, ingrainer=ingrainer).train()
    return model.eval()


def main(args: LabelOnlyArguments, data_args: DataArguments) -> dict:
    splits = data_args.load_splits()
    owner, attacker = splits["owner"], splits["attacker"]
    shape = tuple(owner[0]["pixel_values"].shape)
    key = WatermarkKey.generate(10, shape, 100, seed=args.key_seed)
    key.train_ingrainer(benign_dataset=owner, num_steps=args.ingrainer_steps, num_reference_keys=args.num_reference_keys)
    teacher = _train(_model(1, shape), owner, args.epochs, 1, key)
    extraction = dict(queries="data", num_queries=len(attacker), images=attacker, num_train_epochs=args.epochs,
                      learning_rate=3e-3, seed=3, student=_model(3, shape))
    models = {"ingrained": teacher, "student, T = 4": ExtractionAttack(teacher, **extraction).run()}
    extraction["student"] = _model(3, shape)
    models["student, hard labels"] = ExtractionAttack(teacher, teacher_output="label", **extraction).run()
    for index in range(args.num_independent):
        models[f"independent {index}"] = _train(_model(10 + index, shape), (attacker, owner)[index % 2], args.epochs, 10 + index)
    queries = concatenate_datasets([splits["test"], owner])  # the test split first, the owner's images beyond it
    rows = []
    for name, model in models.items():
        result = verify(model, key, splits["test"])
        rows.append({"model": name, "test": "runner-up (scores)", "budget": len(splits["test"]), **_summary(result)})
        for budget in args.budgets:
            for route, kwargs in ROUTES.items():
                result = verify(model, key, queries, max_queries=budget, **kwargs)
                rows.append({"model": name, "test": route, "budget": budget, **_summary(result)})
                logger.info("%s / %s / %d: %s", name, route, budget, result)
    results = {"arguments": vars(args), "dataset": data_args.dataset, "key_commitment": key.commitment(), "rows": rows}
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "label_only.json"), results)
    write_text(os.path.join(args.output_dir, "label_only.md"), table(rows))
    print(table(rows))
    return results


def _summary(result) -> dict:
    details = result.details
    return {"agreement": result.agreement, "null_rate": result.null_rate, "p_value": result.p_value,
            "verified": result.verified, "compared": result.num_queries,
            "queries_sent": details.get("queries_sent", result.num_queries)}


def table(rows: list[dict]) -> str:
    lines = ["| model | test | budget | queries sent | compared | agreement vs null | p-value |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        mark = "✅" if row["verified"] else "❌"
        lines.append(
            f"| {row['model']} | {row['test']} | {row['budget']} | {row['queries_sent']} | {row['compared']} | "
            f"{row['agreement']:.3f} vs {row['null_rate']:.3f} | {mark} {format_p_value(row['p_value'], spec='.1e')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = IngrainParser([LabelOnlyArguments, DataArguments])
    main(*parser.parse_args_and_config())
