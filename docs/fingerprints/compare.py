r"""
Worth its cost? Ingrain against free fingerprints (issue 35). At the same query budgets and the same alpha, the share
of stolen copies each scheme detects and the share of innocent models it accuses, on transformers' ResNet from config
(arch_cost.py's model, processor and splits). One command, resumable by seed:

    python docs/fingerprints/compare.py --data ../shared/data/mnist --train_size 6000 --key_dir keys/arch_cost \
        --work_dir keys/fingerprints --results_file docs/fingerprints/mnist6k.json

For each seed the owner trains two victims from the same initial weights and batches: a plain one (what the free
fingerprints protect: `VictimErrorFingerprint`, `BoundaryFingerprint`, `DecisionDistanceFingerprint`, made on the test
split with `--num_references` reference models the owner trained by the same recipe, other seeds, shared by the
seeds and kept in `--work_dir`) and an ingrained one (`IngrainTrainer`, the key of `--key_dir`). Each victim is then
stolen the same ways (`STOLEN`): as is, fine-tuned (FTAL, 2 epochs), distilled at T = 4 and from labels only on the
attacker's half, and through the three removal attacks of 2023-2025 (WRK, Neural Dehydration data-free, RemovalNet).
The innocent models (`INNOCENT`) are the same for every scheme: two trained on the attacker's half, one on the owner's
own images with label smoothing 0.1, one on the owner's own images (another seed: the references' recipe), and on the
attacker's half a ConvNeXt and a ViT from config (other architectures) and the victim's architecture trained a third
as long (one epoch). Every model is tested by every scheme at every budget (`--budgets`); a scheme that holds fewer
queries than a budget spends what it holds (the row says how many).

Resumable by suspect: a seed's suspects already in `--results_file` are kept, and only those missing are measured
(a seed measured before an innocent model was added gets that model's rows; its victim and fingerprints are then made
again by the same recipe and seed).
"""

import importlib.util
import logging
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

STOLEN = ("copy", "finetune_FTAL", "student_T4", "student_labels", "wrk", "dehydration", "removalnet")
INNOCENT = ("independent_0", "independent_1", "label_smoothed", "same_data", "convnext", "vit", "short_training")
SCHEMES = (("ingrain", False), ("ingrain", True), ("victim_errors", True), ("boundary", True),
           ("decision_distance", False), ("decision_distance", True))  # (scheme, labels only)


def _arch_cost():
    """docs/arch_cost/arch_cost.py (the model, the processor and the data splits)."""
    path = Path(__file__).resolve().parent.parent / "arch_cost" / "arch_cost.py"
    spec = importlib.util.spec_from_file_location("arch_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class CompareArguments:
    r"""
    Arguments of `compare.py`.

    Args:
        data (`str`): a local parquet folder laid out like `ylecun/mnist` or `zalando-datasets/fashion_mnist`.
        key_dir (`str`): the ingrain key's folder (arch_cost.py's: loaded if there, else made and saved there).
        work_dir (`str`): where the reference models are kept between runs (secret: the owner's).
        train_size (`int`, *optional*): owner's images (default: all of the owner's half).
        seeds (`list[int]`): the victims' seeds.
        num_references (`int`): reference models of the fingerprints (16 or more for alpha = 1e-6).
        budgets (`list[int]`): query budgets.
        results_file (`str`, *optional*): rows written after every seed; a seed's suspects whose rows are there
            are skipped.
    """

    data: str = field(metadata={"help": "Local parquet folder laid out like ylecun/mnist, or a Hub dataset id."})
    key_dir: str = field(metadata={"help": "The ingrain key's folder (arch_cost.py's)."})
    work_dir: str = field(metadata={"help": "Where the reference models are kept between runs."})
    train_size: int | None = field(default=None)
    architecture: str = field(default="resnet")
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    num_references: int = field(default=16)
    budgets: list[int] = field(default_factory=lambda: [100, 1000, 10000])
    num_train_epochs: float = field(default=3.0)
    boundary_queries: int = field(default=1000, metadata={"help": "Queries of the boundary fingerprint."})
    decision_pairs: int = field(default=500, metadata={"help": "Pairs (2 queries each) of the decision distances."})
    alpha: float = field(default=1e-6)
    results_file: str | None = field(default=None)
    key_seed: int = field(default=0, metadata={"help": "Seed of a new key (arch_cost.py's flag)."})


class Run:
    def __init__(self, args: CompareArguments, arch_cost):
        self.args, self.arch_cost = args, arch_cost
        self.splits = arch_cost.load_splits(args.data, args.train_size)
        self.key = arch_cost.load_or_make_key(args, self.splits["owner"])
        self.commitments = {}

    def common(self, seed: int, architecture: str | None = None) -> dict:
        """The training fields of every model of the run (arch_cost.py's: 3 epochs, batch 64, its learning rate)."""
        return dict(num_train_epochs=self.args.num_train_epochs,
                    learning_rate=self.arch_cost.LEARNING_RATES[architecture or self.args.architecture],
                    per_device_train_batch_size=64, seed=seed, data_seed=seed, save_strategy="no", report_to="none",
                    use_cpu=not torch.cuda.is_available(), disable_tqdm=True, logging_strategy="no")

    def plain(self, seed: int, data: str, scratch: str, architecture: str | None = None, **extra):
        from transformers import Trainer, TrainingArguments

        model = self.arch_cost.build(architecture or self.args.architecture, seed)
        args = TrainingArguments(output_dir=scratch, **{**self.common(seed, architecture), **extra})
        Trainer(model=model, args=args, train_dataset=self.splits[data]).train()
        return model.eval()

    def ingrained(self, seed: int, scratch: str):
        from hf_ingrain import IngrainConfig, IngrainTrainer

        model = self.arch_cost.build(self.args.architecture, seed)  # the plain victim's initial weights and batches
        config = IngrainConfig(output_dir=scratch, **self.common(seed))
        IngrainTrainer(model=model, args=config, train_dataset=self.splits["owner"], ingrainer=self.key).train()
        return model.eval()

    def references(self, scratch: str) -> list:
        """The fingerprints' reference models, trained once and kept in `work_dir` (seeds 5000 + n)."""
        from transformers import AutoModelForImageClassification

        models = []
        for number in range(self.args.num_references):
            folder = os.path.join(self.args.work_dir, f"reference_{number}")
            if not os.path.isdir(folder):  # written beside, then renamed: an interrupted run leaves no half model
                self.plain(5000 + number, "owner", scratch).save_pretrained(folder + ".partial")
                os.replace(folder + ".partial", folder)
            models.append(AutoModelForImageClassification.from_pretrained(folder).eval())
        return models

    def stolen(self, victim, seed: int, scratch: str) -> dict:
        from hf_ingrain import DistillationConfig, DistillationTrainer
        from hf_ingrain.attacks import DehydrationAttack, FineTuneAttack, RemovalNetAttack, WRKAttack

        attacker, attack_seed = self.splits["attacker"], seed + 7
        models = {"copy": victim}
        tune = FineTuneAttack(victim, mode="FTAL", num_train_epochs=2, seed=attack_seed)
        models["finetune_FTAL"] = tune.run(attacker)
        for name, output in (("student_T4", {"temperature": 4.0}), ("student_labels", {"teacher_output": "label"})):
            student = self.arch_cost.build(self.args.architecture, seed + 1000)
            config = DistillationConfig(output_dir=scratch, **output, **self.common(seed))
            DistillationTrainer(model=student, teacher=victim, args=config, train_dataset=attacker).train()
            models[name] = student.eval()
        models["wrk"] = WRKAttack(victim, seed=attack_seed).run(attacker)
        # data-free; 32 inputs a class and 100 steps (the defaults: 64 and 200) to keep a seed under an hour on 2 cores
        models["dehydration"] = DehydrationAttack(victim, samples_per_class=32, inversion_steps=100,
                                                  seed=attack_seed).run(attacker)
        models["removalnet"] = RemovalNetAttack(victim, seed=attack_seed).run(attacker)
        return models

    def innocent(self, seed: int, scratch: str, names=INNOCENT) -> dict:
        recipes = {
            "independent_0": lambda: self.plain(seed + 2000, "attacker", scratch),
            "independent_1": lambda: self.plain(seed + 2001, "attacker", scratch),
            "label_smoothed": lambda: self.plain(seed + 3000, "owner", scratch, label_smoothing_factor=0.1),
            "same_data": lambda: self.plain(seed + 4000, "owner", scratch),
            "convnext": lambda: self.plain(seed + 6000, "attacker", scratch, architecture="convnext"),
            "vit": lambda: self.plain(seed + 6001, "attacker", scratch, architecture="vit"),
            "short_training": lambda: self.plain(seed + 6002, "attacker", scratch,
                                                 num_train_epochs=self.args.num_train_epochs / 3),
        }
        return {name: recipes[name]() for name in names}

    def test(self, scheme: str, labels_only: bool, fingerprints: dict, model, budget: int):
        from hf_ingrain import verify

        test = self.splits["test"]
        if scheme == "ingrain":  # committed before the suspect is tested, as a claim must be
            if labels_only:  # a budget of the label-only protocol: queries sent, its ladder's included
                options = dict(protocol="ingrain_labels", alpha=self.args.alpha, max_queries=budget)
            else:  # from scores, one query an image: the budget is the first images of the test split
                test, options = test.select(range(min(budget, len(test)))), dict(alpha=self.args.alpha)
            if (labels_only, budget) not in self.commitments:  # the same for every suspect: committed once
                self.key.commit_queries(test, **options)
                self.commitments[labels_only, budget] = self.key.committed_queries
            self.key.committed_queries = self.commitments[labels_only, budget]
            result = verify(model, self.key, test, **options)
            return result.p_value, result.verified, result.num_queries
        fingerprint = fingerprints[scheme]
        if scheme == "victim_errors":
            result = fingerprint.test(model, test, alpha=self.args.alpha, max_queries=budget)
        elif scheme == "boundary":
            result = fingerprint.test(model, alpha=self.args.alpha, max_queries=budget)
        else:
            result = fingerprint.test(model, labels_only=labels_only, alpha=self.args.alpha, max_queries=budget)
        return result.p_value, result.verified, result.num_queries

    def measure(self, seed: int, references: list, scratch: str, names=STOLEN + INNOCENT) -> list[dict]:
        """The rows of the suspects `names` (default: all) of `seed`."""
        from hf_ingrain.fingerprints import BoundaryFingerprint, DecisionDistanceFingerprint, VictimErrorFingerprint

        started = time.perf_counter()
        plain, test = self.plain(seed, "owner", scratch), self.splits["test"]
        fingerprints = {
            "victim_errors": VictimErrorFingerprint.create(plain, test, references),
            "boundary": BoundaryFingerprint.create(plain, test, references, num_queries=self.args.boundary_queries,
                                                   seed=seed),
            "decision_distance": DecisionDistanceFingerprint.create(plain, test, references,
                                                                    num_pairs=self.args.decision_pairs, seed=seed),
        }
        suspects = []
        if any(name in STOLEN for name in names):
            ingrained = self.ingrained(seed, scratch)
            from_ingrained, from_plain = self.stolen(ingrained, seed, scratch), self.stolen(plain, seed, scratch)
            suspects += [("stolen", name, {"ingrain": from_ingrained[name], "fingerprint": from_plain[name]})
                         for name in STOLEN if name in names]
        innocent = self.innocent(seed, scratch, [name for name in INNOCENT if name in names])
        suspects += [("innocent", name, {"ingrain": model, "fingerprint": model}) for name, model in innocent.items()]
        rows, accuracies = [], {}
        for kind, name, models in suspects:
            for scheme, labels_only in SCHEMES:
                model = models["ingrain" if scheme == "ingrain" else "fingerprint"]
                accuracy = accuracies.setdefault(id(model), self.arch_cost.accuracy(model, test))
                for budget in self.args.budgets:
                    p_value, verified, spent = self.test(scheme, labels_only, fingerprints, model, budget)
                    rows.append({"seed": seed, "scheme": scheme, "labels_only": labels_only, "kind": kind,
                                 "suspect": name, "budget": budget, "queries": spent, "p_value": p_value,
                                 "verified": bool(verified), "accuracy": accuracy})
            logger.info("seed %d: %s %s done (%.0f s)", seed, kind, name, time.perf_counter() - started)
        return rows


def table(rows: list[dict], alpha: float) -> str:
    """Detected stolen copies and accused innocent models, per scheme and budget, over every seed."""
    budgets = sorted({row["budget"] for row in rows})
    lines = ["| scheme | access | " + " | ".join(f"{budget:,} queries: stolen detected / innocent accused"
                                                    for budget in budgets) + " |",
             "|---|---|" + "---|" * len(budgets)]
    for scheme, labels_only in SCHEMES:
        cells = []
        for budget in budgets:
            mine = [row for row in rows if row["scheme"] == scheme and row["labels_only"] == labels_only
                    and row["budget"] == budget]
            if not mine:
                cells.append("-")
                continue
            stolen = [row for row in mine if row["kind"] == "stolen"]
            innocent = [row for row in mine if row["kind"] == "innocent"]
            spent = max(row["queries"] for row in mine)
            note = f" (at most {spent:,} sent)" if spent < budget else ""
            cells.append(f"{sum(r['verified'] for r in stolen)}/{len(stolen)} / "
                         f"{sum(r['verified'] for r in innocent)}/{len(innocent)}{note}")
        lines.append(f"| {scheme} | {'labels' if labels_only else 'scores'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n(alpha = {alpha:g}; seeds {sorted({row['seed'] for row in rows})})"


def attack_table(rows: list[dict], budget: int) -> str:
    """Per stolen or innocent model: the largest p-value over seeds of each scheme at one budget, and accuracy."""
    schemes = list(SCHEMES)
    header = "| model | kind | accuracy: from the ingrained victim / the plain one | " + " | ".join(
        f"{scheme} ({'labels' if labels else 'scores'})" for scheme, labels in schemes) + " |"
    lines = [header, "|---|---|---|" + "---|" * len(schemes)]
    for kind, names in (("stolen", STOLEN), ("innocent", INNOCENT)):
        for name in names:
            accuracies = []
            for ingrain in (True, False):
                values = {(row["seed"], row["accuracy"]) for row in rows
                          if row["suspect"] == name and (row["scheme"] == "ingrain") == ingrain}
                accuracies.append(f"{statistics.mean(value for _, value in values):.3f}" if values else "-")
            cells = [" / ".join(accuracies)]
            for scheme, labels_only in schemes:
                mine = [row for row in rows if row["suspect"] == name and row["scheme"] == scheme
                        and row["labels_only"] == labels_only and row["budget"] == budget]
                if not mine:
                    cells.append("-")
                    continue
                worst = max(row["p_value"] for row in mine) if kind == "stolen" else min(
                    row["p_value"] for row in mine)
                cells.append(f"{sum(r['verified'] for r in mine)}/{len(mine)}, p {'<=' if kind == 'stolen' else '>='} "
                             f"{worst:.1e}")
            lines.append(f"| {name} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    import tempfile

    from transformers import HfArgumentParser

    from hf_ingrain.files import write_json

    (args,) = HfArgumentParser(CompareArguments).parse_args_into_dataclasses(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("transformers").setLevel(logging.WARNING)
    arch_cost = _arch_cost()
    run = Run(args, arch_cost)
    rows = arch_cost.read_rows(args.results_file)  # resuming: the seeds measured already are kept
    with tempfile.TemporaryDirectory() as scratch:
        references = run.references(scratch)
        for seed in args.seeds:
            measured = {row["suspect"] for row in rows if row["seed"] == seed}
            missing = [name for name in STOLEN + INNOCENT if name not in measured]
            if not missing:
                continue
            rows += run.measure(seed, references, scratch, missing)
            if args.results_file:
                write_json(args.results_file, {"arguments": asdict(args), "rows": rows})
    print(table(rows, args.alpha))
    print()
    print(attack_table(rows, max(args.budgets)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
