r"""
Verification through labels alone, measured: an ingrained model, its students (soft labels at T = 4, hard labels) and
independent models, tested with the runner-up protocol and with the label-only protocols at several query budgets.

    # the embedded 5,000 digits, about 6 minutes on 2 CPU cores (`docs/label_only/README.md`'s first table)
    python docs/label_only/label_only.py --output_dir outputs/label_only

    # full MNIST (a local parquet copy of ylecun/mnist), the budgets of the label-only issue
    # (`docs/label_only/README.md`'s second table)
    python docs/label_only/label_only.py --dataset /path/to/mnist --ingrainer_steps 600 --num_reference_keys 16 \
        --epochs 3 --budgets 1000 5000 10000 30000 --output_dir outputs/label_only_full

    # the same at the issue's standard: three keys, students at T = 1 and 4, ten independent models (every third
    # label-smoothed) and, for each key, the models ingrained with the other keys
    python docs/label_only/label_only.py --dataset /path/to/mnist --ingrainer_steps 600 --num_reference_keys 16 \
        --epochs 3 --budgets 1000 5000 10000 30000 --key_seeds 0 1 2 --student_temperatures 1 4 \
        --num_independent 10 --output_dir outputs/label_only_3keys

    # the same with the hardest queries first (2 hours on 2 CPU cores; rerun the command to resume it; each
    # key's 17 ingrainers in 2 processes, run it with OMP_NUM_THREADS=1 for keys equal to a one-process run's)
    python docs/label_only/label_only.py --dataset /path/to/mnist --ingrainer_steps 600 --num_reference_keys 16 \
        --epochs 3 --budgets 1000 5000 10000 30000 --key_seeds 0 1 2 --student_temperatures 1 4 \
        --num_independent 10 --query_order hardest_first --key_num_proc 2 --output_dir outputs/label_only_3keys_hardest

Each key (seeds `--key_seeds`) is spread over the owner split; the owner's model (small CNN) is trained on it with the
ingrain term; the students learn that model's logits (at each of `--student_temperatures`) or its top-1 labels on the
attacker split, which never overlaps the owner's; the independent models are plain small CNNs on either split (every
third with label smoothing 0.1), and for each key the models ingrained with the other keys are independent too. Each
is verified on the queries (in the default order the test split, then the owner split for budgets beyond it; see
below), for each budget, with `protocol="ingrain"`
(the runner-up, one query per image: all scores exposed, then only the two highest), `"ingrain_labels"` with the
occlusion and noise ladders and `"ingrain_errors"`, each sending at most that many queries; the results are written
after every suspect, so a run stopped early keeps what it measured, and the same command resumes it: the keys (secret:
`keys/` is the owner's, readable by them only) and every trained model are saved in `--output_dir` as they are made,
and the suspects already measured are skipped (a run with other arguments is refused). Writes `label_only.json` (every
result) and `label_only.md` (agreement vs null rate, p-value).

The queries go in one order, fixed and recorded (`query_commitments`, each key's ordered digest) before any suspect
is tested: `--query_order test_first` (the test split, then the owner's images) or `hardest_first`
(`hf_ingrain.verification.hardest_first`), every query sorted by the probability a key-free model of the owner (a plain
small CNN on the owner split) gives its true label, lowest first, so that a budget meets more of the images on which
a thief's labels are wrong. The order model never sees the key or a suspect.
"""

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field

import torch
from datasets import concatenate_datasets
from transformers import Trainer, TrainingArguments

from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey, verify
from hf_ingrain.attacks import ExtractionAttack
from hf_ingrain.files import write_json, write_text
from hf_ingrain.models import build_classifier
from hf_ingrain.verification.label_only import hardest_first
from hf_ingrain.data.query_set import read_queries
from hf_ingrain.scripts import DataArguments, IngrainParser
from hf_ingrain.suspects import load_or_train
from hf_ingrain.verification import format_p_value

logger = logging.getLogger(__name__)
SCORE_ROUTES = {  # name: verify() arguments, the suspect's scores exposed (all, or its two highest)
    "runner-up (scores)": dict(),
    "runner-up (top-2)": dict(scores="top_k", top_k=2),
}
QUERY_ORDERS = ("test_first", "hardest_first")
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
        query_order (`str`): `"test_first"` or `"hardest_first"` (see the module's docstring).
        key_num_proc (`int`): processes training each key's ingrainers if their architecture cannot batch (the
            default ingrainers train as one batched model and need none); the keys do not depend on it, so a resumed
            run may change it.
        output_dir (`str`): where the results go (and what a rerun resumes from).
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
    query_order: str = field(
        default="test_first", metadata={"help": "test_first, or hardest_first (by a key-free model of the owner)."}
    )
    key_num_proc: int = field(default=1, metadata={"help": "Processes training each key's ingrainers."})
    output_dir: str = field(default="outputs/label_only", metadata={"help": "Where the results go."})

    def __post_init__(self):
        if self.query_order not in QUERY_ORDERS:
            raise ValueError(f"`query_order` must be one of {QUERY_ORDERS}, got {self.query_order!r}.")
        if self.key_num_proc < 1:
            raise ValueError(f"`key_num_proc` must be >= 1 (1: this process alone), got {self.key_num_proc}.")


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
    rows = _recorded_rows(args, data_args)  # before any long work: a rerun with other arguments is refused here
    splits = data_args.load_splits()
    owner, attacker = splits["owner"], splits["attacker"]
    shape = tuple(owner[0]["pixel_values"].shape)
    keys, teachers = {}, {}
    for index, seed in enumerate(args.key_seeds):
        keys[seed] = _cached_key(args, seed, owner, shape)
        teachers[seed] = _cached_model(args, f"ingrained with key {seed}", lambda: _train(
            _model(1 + 100 * index, shape), owner, args.epochs, 1 + 100 * index, keys[seed]
        ))
    independent = {}
    for i in range(args.num_independent):
        name = f"independent {i}" + (", label smoothing" if i % 3 == 2 else "")
        independent[name] = _cached_model(args, name, lambda: _train(
            _model(10 + i, shape), (attacker, owner)[i % 2], args.epochs, 10 + i, label_smoothing=0.1 * (i % 3 == 2)
        ))
    queries = concatenate_datasets([splits["test"], owner])  # the test split first, the owner's images beyond it
    if args.query_order == "hardest_first":
        order_model = _cached_model(args, "order model", lambda: _train(_model(7, shape), owner, args.epochs, 7))
        queries = hardest_first(queries, order_model)
    # The order is committed (each key's ordered digest) before any suspect is tested
    commitments = {str(seed): read_queries(key, queries).commitment() for seed, key in keys.items()}
    done = {(row["key_seed"], row["model"]) for row in rows}
    for index, (seed, key) in enumerate(keys.items()):
        derived = {"ingrained": teachers[seed]}
        for output, temperature in [("logits", t) for t in args.student_temperatures] + [("label", None)]:
            name = f"student, T = {temperature:g}" if output == "logits" else "student, hard labels"
            if (seed, name) in done:
                continue
            derived[name] = _cached_model(args, f"key {seed} {name}", lambda: ExtractionAttack(
                teachers[seed], queries="data", num_queries=len(attacker), images=attacker, teacher_output=output,
                temperature=temperature or 4.0, num_train_epochs=args.epochs, learning_rate=3e-3,
                seed=3 + 100 * index, student=_model(3 + 100 * index, shape),
            ).run())
        others = {f"ingrained with key {other}": teachers[other] for other in keys if other != seed}
        suspects = [(name, model, True) for name, model in derived.items()]
        suspects += [(name, model, False) for name, model in {**independent, **others}.items()]
        for name, model, is_derived in suspects:
            if (seed, name) in done:
                continue
            common = {"key_seed": seed, "model": name, "derived": is_derived}
            for budget in args.budgets:  # one query per image: the first `budget` images
                for route, kwargs in SCORE_ROUTES.items():
                    result = verify(model, key, queries.select(range(min(budget, len(queries)))), **kwargs)
                    rows.append({**common, "test": route, "budget": budget, **_summary(result)})
                for route, kwargs in ROUTES.items():
                    result = verify(model, key, queries, max_queries=budget, **kwargs)
                    rows.append({**common, "test": route, "budget": budget, **_summary(result)})
                    logger.info("key %d / %s / %s / %d: %s", seed, name, route, budget, result)
            _write(args, data_args, keys, commitments, rows)  # after every suspect: a run that stops keeps its rows
    results = _write(args, data_args, keys, commitments, rows)
    print(report(rows))
    return results


def _recorded_rows(args, data_args) -> list[dict]:
    """The rows of an earlier run of the same arguments in `output_dir` (none for a new run); refuses other ones."""
    path = os.path.join(args.output_dir, "label_only.json")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        recorded = json.load(f)
    settings = {"arguments": _result_arguments(vars(args)), "data_arguments": vars(data_args)}
    recorded["arguments"] = _result_arguments(recorded.get("arguments") or {})
    if {name: recorded.get(name) for name in settings} != json.loads(json.dumps(settings)):
        raise ValueError(
            f"{args.output_dir!r} holds a run with other arguments; its results would be mixed with this run's. Use "
            "a new --output_dir, or delete that one to start over."
        )
    return recorded["rows"]


def _result_arguments(arguments: dict) -> dict:
    """The arguments the results depend on: not where they go, nor how many processes train a key."""
    return {name: value for name, value in arguments.items() if name not in ("output_dir", "key_num_proc")}


def _cached_key(args, seed, owner, shape):
    """Key `seed`: loaded from `output_dir/keys/<seed>` if an earlier run saved it, else made and saved there."""
    path = os.path.join(args.output_dir, "keys", str(seed))
    if os.path.isdir(path):
        return WatermarkKey.load(path)
    key = WatermarkKey.generate(10, shape, 100, seed=seed)
    key.train_ingrainer(
        benign_dataset=owner, num_steps=args.ingrainer_steps, num_reference_keys=args.num_reference_keys,
        num_proc=args.key_num_proc,
    )
    key.save(path)
    return key


def _cached_model(args, name, train):
    """The model `name`: loaded from `output_dir/models/` if an earlier run saved it, else trained and saved there."""
    return load_or_train(os.path.join(args.output_dir, "models", re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")),
                         train).eval()


def _write(args, data_args, keys, query_commitments, rows) -> dict:
    commitments = {str(seed): key.commitment() for seed, key in keys.items()}
    results = {"arguments": vars(args), "data_arguments": vars(data_args), "dataset": data_args.dataset,
               "key_commitments": commitments, "query_commitments": query_commitments, "rows": rows}
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
