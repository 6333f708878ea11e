r"""
The accuracy cost of `IngrainTrainer` on `transformers`' own ResNet, ConvNeXt and ViT (built from config), against a
plain `Trainer` at equal training, and whether the watermark verifies in each model and in a student distilled from it
at T = 4. One command gives a table of `docs/arch_cost/README.md`:

    # full MNIST (a local parquet copy laid out like ylecun/mnist): the owner's 30,000 images (512 held out), 3 seeds
    python docs/arch_cost/arch_cost.py --data ../shared/data/mnist --key_dir keys/arch_cost --results_file full.json

    # the owner's first 6,000 images
    python docs/arch_cost/arch_cost.py --data ../shared/data/mnist --train_size 6000 --key_dir keys/arch_cost \
        --results_file 6k.json

The images go through the processor an image-classification script uses (`ViTImageProcessor`: RGB, 28 x 28, mean and
std 0.5, so values in [-1, 1]), once, before training; the key is made for that model and processor with
`WatermarkKey.generate_for` and its ingrainer spread over the owner's training images (loaded from `--key_dir` when
one is there, else drawn from `--key_seed` and saved there). For every architecture and seed, the plain and the
ingrained model start from the same weights and see the same batches; the student (same architecture, fresh weights)
learns the ingrained model's logits at T = 4 on as many images of the attacker's split, which never overlaps the
owner's. Every model is verified on the 10,000 test images with the key-draw test (`verify`).

The variants of the loss measured in `docs/arch_cost/README.md` are flags: `--ingrain_target_scale`
(`IngrainConfig`'s field: multiplies the ingrainer's logits, for flatter or sharper targets), `--lambda_warmup` (λ
ramps from 0 over this share of the steps), `--ingrain_exclude_label` (`IngrainConfig`'s field: the KL over the classes
other than the true one, both distributions renormalised), `--ingrain_lambda_mode auto` (`IngrainConfig`'s field: λ
controlled during training, `hf_ingrain.trainer.controller`, measured every `--ingrain_strength_steps` steps).

The watermark's strength is measured during training on the owner's last 512 images (`HELD_OUT`), which no model
trains on: without `--train_size`, the owner trains on the rest of its split.
"""

import json
import logging
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

logger = logging.getLogger(__name__)

ARCHITECTURES = ("resnet", "convnext", "vit")
HELD_OUT = 512  # the owner's last images (a quarter at most): the strength measurement's examples, never trained on
# Chosen on the plain Trainer (6,000 images, 3 epochs, seed 0, 2026-12-02): ConvNeXt reached 0.83 at 1e-3, 0.91 at
# 4e-3 and 0.92 at 1e-2 (its layer scale starts at 1e-6); ViT 0.67 at 5e-4, 0.71 at 1e-3 and at 3e-3.
LEARNING_RATES = {"resnet": 1e-3, "convnext": 4e-3, "vit": 1e-3}


@dataclass
class CostArguments:
    r"""
    Arguments of `arch_cost.py`.

    Args:
        data (`str`): a local folder of parquet files laid out like `ylecun/mnist` (`train-*`, `test-*`), or a Hub id.
        key_dir (`str`): the key's folder (loaded if there, else created from `key_seed`).
        train_size (`int`, *optional*): images of the owner's split to train on (default: all of it).
        architectures (`list[str]`): any of `resnet`, `convnext`, `vit`.
        seeds (`list[int]`): training seeds (initial weights and batch order).
        num_train_epochs (`float`): epochs of every training, the student's included.
        results_file (`str`, *optional*): also write every measurement to this JSON file, after every seed; a run
            with the same file skips the architectures and seeds whose rows are all there (resumable).
    """

    data: str = field(metadata={"help": "Local parquet folder laid out like ylecun/mnist, or a Hub dataset id."})
    key_dir: str = field(metadata={"help": "The key's folder: loaded if there, else created from --key_seed."})
    train_size: int | None = field(default=None, metadata={"help": "Owner's images to train on (default: all)."})
    architectures: list[str] = field(default_factory=lambda: list(ARCHITECTURES))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    num_train_epochs: float = field(default=3.0)
    learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of every training (default: per architecture, LEARNING_RATES)."}
    )
    batch_size: int = field(default=64)
    key_seed: int = field(default=0, metadata={"help": "Seed of a new key (experiments only)."})
    ingrain_lambda: float = field(default=0.5)
    ingrain_temperature: float = field(default=4.0)
    ingrainer_steps: int = field(default=600, metadata={"help": "The key's training steps: 600 made the tables in "
                                                                 "this folder (the package's default is 150)."})
    ingrain_target_scale: float = field(
        default=1.0, metadata={"help": "Multiplies the ingrainer's logits in the loss (IngrainConfig's field)."}
    )
    lambda_warmup: float = field(default=0.0, metadata={"help": "Variant: share of the steps over which λ ramps up."})
    ingrain_exclude_label: bool = field(
        default=False, metadata={"help": "Leave the true class out of the ingrain term (IngrainConfig's field)."}
    )
    ingrain_lambda_mode: str = field(
        default="fixed", metadata={"help": "fixed, or auto: λ controlled during training (IngrainConfig's field)."}
    )
    ingrain_strength_steps: int = field(
        default=0, metadata={"help": "Measure the watermark every N steps (IngrainConfig's field; 0: auto's default)."}
    )
    controller_band: float | None = field(
        default=None, metadata={"help": "Variant of the auto mode, in the script only: the controller lowers λ when "
                                "the prediction is this many powers of ten past its target (default: the "
                                "controller's, 4)."}
    )
    num_reference_keys: int | None = field(
        default=None, metadata={"help": "A new key's reference ingrainers (default: the package's)."}
    )
    second_key_dir: str | None = field(
        default=None, metadata={"help": "Also verify every model with this key (p_value_2), made when it is not there "
                                "as the key with its references extended to --second_num_reference_keys: the same "
                                "ingrainer and first references, so the same models are judged by both."}
    )
    second_num_reference_keys: int = field(default=32)
    plain: bool = field(default=True, metadata={"help": "Train the plain Trainer's twin (off: variants of the loss)."})
    student: bool = field(default=True, metadata={"help": "Distil students from each ingrained model (--students)."})
    students: list[str] = field(
        default_factory=lambda: ["4"],
        metadata={"help": "The students distilled from each ingrained model: a temperature (learns its logits at that "
                  "T) or `label` (learns its top-1 labels only, what a label-only API gives)."},
    )
    num_independent: int = field(
        default=0, metadata={"help": "Also train this many independent models (plain, on the attacker's images)."}
    )
    label_only: bool = field(
        default=False, metadata={"help": "Also verify every model from its labels only (protocol `ingrain_labels`)."}
    )
    results_file: str | None = field(default=None)

    def __post_init__(self):
        unknown = sorted(set(self.architectures) - set(ARCHITECTURES))
        if unknown:
            raise ValueError(f"Unknown architectures {unknown}: choose among {list(ARCHITECTURES)}.")
        for student in self.students:
            if student != "label" and not _positive_number(student):
                raise ValueError(f"Unknown student {student!r}: a temperature (e.g. 4) or `label`.")
        if not 0 <= self.lambda_warmup <= 1:
            raise ValueError(f"`lambda_warmup` must be in [0, 1], got {self.lambda_warmup}.")


def _positive_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def student_name(student: str) -> str:
    """The row's name of a student: `student` for T = 4 (the name of the first tables), `student_t1`,
    `student_label`."""
    if student == "label":
        return "student_label"
    temperature = float(student)
    return "student" if temperature == 4 else f"student_t{temperature:g}"


def build(architecture: str, seed: int, num_labels: int = 10):
    """A freshly initialised tiny `transformers` classifier for 3 x 28 x 28 images."""
    from transformers import AutoModelForImageClassification, ConvNextConfig, ResNetConfig, ViTConfig

    if architecture == "resnet":
        config = ResNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[16, 32, 64], depths=[1, 1, 1],
                              layer_type="basic", num_labels=num_labels)
    elif architecture == "convnext":
        config = ConvNextConfig(num_channels=3, patch_size=2, num_stages=3, hidden_sizes=[16, 32, 64], depths=[1, 1, 1],
                                image_size=28, num_labels=num_labels)
    else:
        config = ViTConfig(image_size=28, patch_size=7, num_channels=3, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=128, num_labels=num_labels)
    torch.manual_seed(seed)
    return AutoModelForImageClassification.from_config(config)


def processor():
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": 28, "width": 28})


def load_splits(data: str, train_size: int | None, split_seed: int = 0):
    """Owner / attacker / test splits as `pixel_values` (through the processor) and `labels`, in torch format."""
    from datasets import Dataset
    from tqdm.auto import tqdm

    from hf_ingrain.data import split_indices
    from hf_ingrain.data.preparation import load_data

    image_processor = processor()

    def prepared(raw, indices, name):
        column = next((c for c in ("image", "img") if c in raw.column_names), None)  # ylecun/mnist, uoft-cs/cifar10
        if column is None:
            raise ValueError(f"{data!r} has no `image` or `img` column (columns: {raw.column_names}).")
        pixels = []
        for start in tqdm(range(0, len(indices), 1000), desc=f"Processing {name}", leave=False):
            rows = raw[indices[start:start + 1000]]
            images = [image.convert("RGB") for image in rows[column]]
            pixels.append(np.asarray(image_processor(images, return_tensors="np")["pixel_values"], dtype=np.float32))
        labels = np.asarray(raw[indices]["label"], dtype=np.int64)
        return Dataset.from_dict({"pixel_values": np.concatenate(pixels), "labels": labels}).with_format("torch")

    train, test = load_data(data, "train"), load_data(data, "test")
    owner, attacker = split_indices(len(train), (0.5, 0.5), split_seed)  # the recipes' halves of the 60,000
    held_out = min(HELD_OUT, len(owner) // 4)
    size = train_size or len(owner) - held_out
    if size > min(len(owner) - held_out, len(attacker)):
        raise ValueError(f"`train_size` {size} is larger than the owner's split ({len(owner)} images, {held_out} of "
                         "them held out).")
    return {
        "owner": prepared(train, list(owner[:size]), "owner"),
        "held_out": prepared(train, list(owner[len(owner) - held_out:]), "held out"),
        "attacker": prepared(train, list(attacker[:size]), "attacker"),
        "test": prepared(test, list(range(len(test))), "test"),
    }


def load_or_make_key(args: CostArguments, owner):
    from hf_ingrain import WatermarkKey
    from hf_ingrain.keys import KEY_FILE

    if os.path.isfile(os.path.join(args.key_dir, KEY_FILE)):
        return WatermarkKey.load(args.key_dir)
    key = WatermarkKey.generate_for(build("resnet", 0), processor(), seed=args.key_seed)
    # 600 steps made the tables here and in the scripts that share this key (fine_tune.py, compare.py)
    references = getattr(args, "num_reference_keys", None)  # scripts sharing this loader may not have the field
    options = {} if references is None else {"num_reference_keys": references}
    key.train_ingrainer(benign_dataset=owner, num_steps=getattr(args, "ingrainer_steps", 600), **options)
    key.save(args.key_dir)
    return key


def load_or_extend_key(key_dir: str, second_key_dir: str, num_reference_keys: int, owner):
    """The second key: loaded, or made and saved as the key of `key_dir` with its references extended to
    `num_reference_keys` (`WatermarkKey.extend_references`: the same ingrainer and first references, bit for bit)."""
    from hf_ingrain import WatermarkKey
    from hf_ingrain.keys import KEY_FILE

    if os.path.isfile(os.path.join(second_key_dir, KEY_FILE)):
        return WatermarkKey.load(second_key_dir)
    key = WatermarkKey.load(key_dir)
    key.extend_references(num_reference_keys, benign_dataset=owner)
    key.save(second_key_dir)
    return key


def committed_keys(args, splits) -> tuple:
    """The key (`load_or_make_key`) and, with `--second_key_dir`, the second key (`load_or_extend_key`), each committed
    to the test split; the second is `None` without it. Also `fine_tune.py`'s (its arguments have the same fields)."""
    key = load_or_make_key(args, splits["owner"])
    key.commit_queries(splits["test"])
    second_key = None
    if args.second_key_dir is not None:
        second_key = load_or_extend_key(args.key_dir, args.second_key_dir, args.second_num_reference_keys,
                                        splits["owner"])
        second_key.commit_queries(splits["test"])
    return key, second_key


def variant_trainer(args: CostArguments):
    """`IngrainTrainer`, with the λ schedule of the variant measured (`--lambda_warmup`, over the fixed or the
    controlled λ)."""
    from hf_ingrain import IngrainTrainer

    class VariantTrainer(IngrainTrainer):
        def ingrain_weight(self):
            total = max(self.state.max_steps, 1)
            ramp = args.lambda_warmup * total
            if ramp <= 0:
                return super().ingrain_weight()
            return super().ingrain_weight() * min(1.0, self.state.global_step / ramp)

        def train(self, *positional, **keywords):
            if args.controller_band is not None and self.weight_controller is not None:
                self.weight_controller.band = float(args.controller_band)
            return super().train(*positional, **keywords)

    return VariantTrainer


def accuracy(model, dataset) -> float:
    from hf_ingrain.data import iterate_batches
    from hf_ingrain.suspects import forward_logits

    model.eval()
    correct = 0
    for batch in iterate_batches(dataset, 512):
        correct += int((forward_logits(model, batch).argmax(-1) == batch["labels"]).sum())
    return correct / len(dataset)


def verified_row(classifier, key, test, started: float, label_only: bool = False, second_key=None, **fields) -> dict:
    """A results row: `fields`, then the classifier's accuracy and verification on `test` (and, with `label_only`,
    from its labels only), the seconds since `started`, and with `second_key` the same model judged by that key
    (`p_value_2`: the key with more references)."""
    from hf_ingrain import verify

    result = verify(classifier, key, test)
    row = {**fields, "accuracy": accuracy(classifier, test), "agreement": result.agreement,
           "null_rate": result.null_rate, "p_value": result.p_value, "verified": result.verified}
    if label_only:  # the same test images, the suspect's labels only
        labels = verify(classifier, key, test, protocol="ingrain_labels")
        row.update(label_p_value=labels.p_value, label_verified=labels.verified)
    row["seconds"] = round(time.perf_counter() - started, 1)
    if second_key is not None:
        second = verify(classifier, second_key, test)
        row.update(p_value_2=second.p_value, verified_2=second.verified,
                   num_references_2=len(second_key.reference_ingrainers))
    return row


def measure(args: CostArguments, splits, key, architecture: str, seed: int, output_dir: str,
            second_key=None) -> list[dict]:
    from transformers import Trainer, TrainingArguments

    from hf_ingrain import DistillationConfig, DistillationTrainer, IngrainConfig

    common = dict(
        num_train_epochs=args.num_train_epochs, learning_rate=args.learning_rate or LEARNING_RATES[architecture],
        per_device_train_batch_size=args.batch_size, seed=seed, data_seed=seed, save_strategy="no",
        report_to="none", use_cpu=not torch.cuda.is_available(), disable_tqdm=True, logging_strategy="no",
    )
    rows = []

    def record(kind, model, started, **extra):
        row = verified_row(model, key, splits["test"], started, args.label_only, second_key,
                           architecture=architecture, seed=seed, model=kind)
        row = {**row, **extra}
        rows.append(row)
        logger.info("%s", row)

    if args.plain:
        started = time.perf_counter()
        plain = build(architecture, seed)
        Trainer(model=plain, args=TrainingArguments(output_dir=f"{output_dir}/plain", **common),
                train_dataset=splits["owner"]).train()
        record("plain", plain, started)

    started = time.perf_counter()
    ingrained = build(architecture, seed)  # the plain model's initial weights
    config = IngrainConfig(output_dir=f"{output_dir}/ingrain", ingrain_lambda=args.ingrain_lambda,
                           ingrain_temperature=args.ingrain_temperature,
                           ingrain_target_scale=args.ingrain_target_scale,
                           ingrain_exclude_label=args.ingrain_exclude_label,
                           ingrain_lambda_mode=args.ingrain_lambda_mode,
                           ingrain_strength_steps=args.ingrain_strength_steps, **common)
    trainer = variant_trainer(args)(model=ingrained, args=config, train_dataset=splits["owner"], ingrainer=key,
                                    strength_dataset=splits["held_out"])
    trainer.train()
    strength = trainer.watermark_strength
    record("ingrain", ingrained, started, final_lambda=trainer.ingrain_weight(),
           predicted_p_value=None if strength is None else strength.predicted_p_value,
           strength_history=strength_history(trainer.state.log_history))

    if args.student:
        for student_kind in args.students:
            started = time.perf_counter()
            student = build(architecture, seed + 1000)
            if student_kind == "label":
                output = dict(teacher_output="label")
            else:
                output = dict(temperature=float(student_kind))
            config = DistillationConfig(output_dir=f"{output_dir}/student", **output, **common)
            DistillationTrainer(model=student, teacher=ingrained, args=config,
                                train_dataset=splits["attacker"]).train()
            record(student_name(student_kind), student, started)

    for index in range(args.num_independent):  # trained on the attacker's images, never near the key
        started = time.perf_counter()
        independent = build(architecture, seed + 2000 + index)
        Trainer(model=independent, args=TrainingArguments(output_dir=f"{output_dir}/independent", **common),
                train_dataset=splits["attacker"]).train()
        record("independent", independent, started)
    return rows


def strength_history(log_history: list[dict]) -> list[list[float]]:
    """The watermark's strength as training measured it: [step, margin, predicted log10 p, λ after the measurement]
    at every measurement (λ is `None` at the fixed λ)."""
    return [[entry["step"], round(entry["ingrain/margin"], 4), round(entry["ingrain/log10_p_value"], 2),
             entry.get("ingrain/lambda")] for entry in log_history if "ingrain/margin" in entry]


def table(rows: list[dict]) -> str:
    """Mean ± sd over seeds per architecture: accuracies, the cost, and the p-values of the ingrained and student
    models (the largest over seeds: the one that must clear alpha)."""

    def cell(values, digits=3):
        if not values:
            return "-"
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"

    from hf_ingrain.verification.statistics import format_p_value

    lines = ["| model | plain | ingrain | cost (points) | plain: smallest p | ingrain: largest p | student | "
             "student: largest p |", "|---|---|---|---|---|---|---|---|"]
    for architecture in dict.fromkeys(row["architecture"] for row in rows):
        by = {kind: [r for r in rows if r["architecture"] == architecture and r["model"] == kind]
              for kind in ("plain", "ingrain", "student")}
        plain = [r["accuracy"] for r in by["plain"]]
        ingrain = [r["accuracy"] for r in by["ingrain"]]
        cost = [100 * (p - i) for p, i in zip(plain, ingrain)]
        student = [r["accuracy"] for r in by["student"]]

        def p_values(kind, pick):
            if not by[kind]:
                return "-"
            verified = sum(r["verified"] for r in by[kind])
            return f"p {format_p_value(pick(r['p_value'] for r in by[kind]))} ({verified}/{len(by[kind])} verified)"

        lines.append(
            f"| {architecture} | {cell(plain)} | {cell(ingrain)} | {cell(cost, 1)} | {p_values('plain', min)} | "
            f"{p_values('ingrain', max)} | {cell(student) if student else '-'} | {p_values('student', max)} |"
        )
    return "\n".join(lines)


def read_rows(results_file: str | None) -> list[dict]:
    """The rows of an earlier run's results file (none when there is no file): what a resumed run keeps."""
    if not results_file or not os.path.isfile(results_file):
        return []
    with open(results_file) as handle:
        return json.load(handle)["rows"]


def seed_done(rows: list[dict], architecture: str, seed: int, expected: list[str]) -> bool:
    """Whether `rows` hold exactly the `expected` kinds of model for this architecture and seed."""
    done = [r["model"] for r in rows if r["architecture"] == architecture and r["seed"] == seed]
    return sorted(done) == sorted(expected)


def without_seed(rows: list[dict], architecture: str, seed: int) -> list[dict]:
    """`rows` less those of an architecture and seed measured only in part (they are measured again)."""
    return [r for r in rows if not (r["architecture"] == architecture and r["seed"] == seed)]


def long_table(rows: list[dict]) -> str:
    """One line per architecture and kind of model: accuracy (mean ± sd over seeds) and, for the models derived from
    the ingrained one, the largest p-value over seeds (the one that must clear alpha); for the models that never saw
    the key (plain, independent, a pre-trained base), the smallest. With `--label_only`, the same from the labels
    alone."""
    from hf_ingrain.verification.statistics import format_p_value

    def p_cell(selected, field, verified_field, keyed):
        values = [r[field] for r in selected if r.get(field) is not None]
        if not values:
            return "-"
        verified = sum(bool(r[verified_field]) for r in selected)
        return f"p {format_p_value(max(values) if keyed else min(values))} ({verified}/{len(values)} verified)"

    lines = ["| model | kind | accuracy | p: largest keyed, smallest never keyed | labels only |",
             "|---|---|---|---|---|"]
    for architecture in dict.fromkeys(row["architecture"] for row in rows):
        for kind in dict.fromkeys(row["model"] for row in rows if row["architecture"] == architecture):
            selected = [r for r in rows if r["architecture"] == architecture and r["model"] == kind]
            accuracies = [r["accuracy"] for r in selected]
            accuracy = (f"{accuracies[0]:.3f}" if len(accuracies) == 1 else
                        f"{statistics.mean(accuracies):.3f} ± {statistics.stdev(accuracies):.3f}")
            keyed = not kind.startswith("plain") and kind not in ("independent", "base")  # base: fine_tune.py's
            lines.append(f"| {architecture} | {kind} | {accuracy} | {p_cell(selected, 'p_value', 'verified', keyed)} | "
                         f"{p_cell(selected, 'label_p_value', 'label_verified', keyed)} |")
    return "\n".join(lines)


def main(argv=None):
    from transformers import HfArgumentParser

    from hf_ingrain.files import write_json

    (args,) = HfArgumentParser(CostArguments).parse_args_into_dataclasses(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("transformers").setLevel(logging.WARNING)
    import tempfile

    splits = load_splits(args.data, args.train_size)
    key, second_key = committed_keys(args, splits)
    rows = read_rows(args.results_file)  # resuming: the seeds measured already are kept
    expected = (["plain"] if args.plain else []) + ["ingrain"]
    expected += [student_name(student) for student in args.students] if args.student else []
    expected += ["independent"] * args.num_independent
    with tempfile.TemporaryDirectory() as scratch:  # nothing is saved but the results
        for architecture in args.architectures:
            for seed in args.seeds:
                if seed_done(rows, architecture, seed, expected):
                    continue
                rows = without_seed(rows, architecture, seed)
                rows += measure(args, splits, key, architecture, seed, scratch, second_key)
                if args.results_file:
                    write_json(args.results_file, {"arguments": asdict(args), "rows": rows})
    print(table(rows))
    print()
    print(long_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
