r"""
Fine-tuned models, the usual case (issue 34, item 2): a model first trained on one data set and saved (the
"pretrained" checkpoint: no Hub weights offline, so the script trains and saves it), then fine-tuned on the owner's
task with `IngrainTrainer`, fully and with LoRA, against a plain `Trainer` fine-tuned the same way. One command gives
the table of `docs/fine_tune/README.md`:

    python docs/fine_tune/fine_tune.py --pretrain_data ../shared/data/fashion_mnist --data ../shared/data/mnist \
        --output_dir fine_tune_run --results_file docs/fine_tune/fashion_to_mnist.json

For every architecture the pretrained checkpoint is trained once on `--pretrain_size` images of `--pretrain_data`
and saved in `--output_dir` (kept: a second run loads it). Every fine-tuning starts from it as a user's script does,
`AutoModelForImageClassification.from_pretrained(checkpoint, num_labels=..., ignore_mismatched_sizes=True)`, and sees
the same batches: plain, ingrained, and the same two with a LoRA adapter (`peft`, the classifier fully trained,
merged after training). The key is made for the model and its processor and spread over the owner's images of
`--data` (loaded from `--key_dir` when one is there). The students of each ingrained model (`--students`: its logits
at T = 4, by default, at any other temperature, or its labels only with `label`) learn on the attacker's images,
starting from the public pretrained checkpoint (the attacker has it too). Every model, the pretrained checkpoint
included, is verified on the test images (and from its labels only with `--label_only true`); the checkpoint never
saw the key and must never verify. `--plain false` leaves out the plain fine-tunings (a second run of the same
recipe, for more students of the same ingrained models: they train again to the same weights). The ingrain term's
settings (`--ingrain_temperature`, `--ingrain_exclude_label`, `--ingrain_lambda_mode`) are `IngrainConfig`'s; with
`--second_key_dir` every model is also judged by the key with its references extended (`p_value_2`), as in
`arch_cost.py`.

The results file is written after every seed, and a seed whose rows are all there is not run again (resumable).
"""

import logging
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

ARCHITECTURES = ("resnet", "vit")
LORA_TARGETS = {"resnet": ["convolution"], "vit": ["q_proj", "v_proj"]}  # every convolution; attention's q and v
FINE_TUNINGS = ("plain", "ingrain", "plain_lora", "ingrain_lora")
KINDS = FINE_TUNINGS + ("student", "student_lora")  # the rows of one seed with the default flags


def fine_tunings(args: "FineTuneArguments") -> list[str]:
    """The fine-tunings of one architecture and seed: the ingrained ones, and the plain twins unless `--plain false`."""
    return [kind for kind in FINE_TUNINGS if args.plain or not kind.startswith("plain")]


def kinds(args: "FineTuneArguments", arch_cost) -> list[str]:
    """The rows of one architecture and seed: the fine-tunings, then each ingrained model's students (named as
    arch_cost.py names them: `student` for T = 4, `student_t1`, `student_label`; `_lora` for the adapter's)."""
    students = [arch_cost.student_name(student) + lora for lora in ("", "_lora") for student in args.students]
    return fine_tunings(args) + students


def _arch_cost():
    """docs/arch_cost/arch_cost.py (the models, the processor and the data splits of its table)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "arch_cost" / "arch_cost.py"
    spec = importlib.util.spec_from_file_location("arch_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class FineTuneArguments:
    r"""
    Arguments of `fine_tune.py`.

    Args:
        data (`str`): the owner's task: a local parquet folder laid out like `ylecun/mnist`, or a Hub id.
        pretrain_data (`str`): the data set the pretrained checkpoint is trained on (same layout).
        output_dir (`str`): where the pretrained checkpoints are kept (and the key, without `key_dir`).
        results_file (`str`): every row, as JSON; a seed already there is not run again.
        key_dir (`str`, *optional*): the key's folder (default: `output_dir/key`).
        train_size (`int`): the owner's images fine-tuned on; pretrain_size (`int`): the checkpoint's images.
        lora_learning_rate (`float`, *optional*): the LoRA runs' learning rate (default: 4 times the full runs').
        students (`list[str]`): the students of each ingrained model: a temperature (learns its logits at that
            temperature) or `label` (its labels only).
        label_only (`bool`): also verify every model from its labels only (`protocol="ingrain_labels"`).
        plain (`bool`): fine-tune the plain twins too (their rows give the cost).
        ingrain_temperature, ingrain_exclude_label, ingrain_lambda_mode: `IngrainConfig`'s fields.
        second_key_dir (`str`, *optional*): also judge every model by this key (made when missing as the key with its
            references extended to `second_num_reference_keys`).
    """

    data: str = field(metadata={"help": "The owner's task: a local parquet folder like ylecun/mnist, or a Hub id."})
    pretrain_data: str = field(metadata={"help": "The data the pretrained checkpoint is trained on (same layout)."})
    output_dir: str = field(metadata={"help": "Where the pretrained checkpoints (and the default key) are kept."})
    results_file: str = field(metadata={"help": "Every row (JSON); seeds already there are not run again."})
    key_dir: str | None = field(default=None, metadata={"help": "The key's folder (default: output_dir/key)."})
    architectures: list[str] = field(default_factory=lambda: ["resnet"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    train_size: int = field(default=6000, metadata={"help": "The owner's images fine-tuned on."})
    pretrain_size: int = field(default=12000, metadata={"help": "Images the pretrained checkpoint is trained on."})
    pretrain_epochs: float = field(default=3.0)
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs of every fine-tuning and student."})
    learning_rate: float | None = field(default=None, metadata={"help": "Default: arch_cost's per architecture."})
    lora_learning_rate: float | None = field(default=None, metadata={"help": "Default: 4 x the full runs' rate."})
    lora_r: int = field(default=8)
    batch_size: int = field(default=64)
    ingrain_lambda: float = field(default=0.5)
    key_seed: int = field(default=0, metadata={"help": "Seed of a new key (experiments only)."})
    students: list[str] = field(
        default_factory=lambda: ["4"],
        metadata={"help": "Students of each ingrained model: a temperature (learns its logits at it) or `label`."})
    label_only: bool = field(default=False, metadata={"help": "Also verify every model from its labels only."})
    plain: bool = field(default=True, metadata={"help": "Fine-tune the plain twins too (they give the cost)."})
    ingrain_temperature: float = field(default=4.0, metadata={"help": "IngrainConfig's field."})
    ingrain_exclude_label: bool = field(default=False, metadata={"help": "IngrainConfig's field."})
    ingrain_lambda_mode: str = field(default="fixed", metadata={"help": "IngrainConfig's field: fixed or auto."})
    second_key_dir: str | None = field(
        default=None, metadata={"help": "Also judge every model by this key, made when missing as the key with more "
                                        "references."})
    second_num_reference_keys: int = field(default=32)

    def __post_init__(self):
        unknown = sorted(set(self.architectures) - set(ARCHITECTURES))
        if unknown:
            raise ValueError(f"Unknown architectures {unknown}: choose among {list(ARCHITECTURES)}.")
        for student in self.students:
            if student != "label" and not _arch_cost()._positive_number(student):
                raise ValueError(f"Unknown student {student!r}: a temperature (e.g. 4) or `label`.")
        if self.key_dir is None:
            self.key_dir = os.path.join(self.output_dir, "key")
        try:
            import peft  # noqa: F401
        except ImportError as error:
            raise ImportError("The LoRA rows need peft: pip install 'hf-ingrain[peft]'.") from error


def pretrained_checkpoint(args: FineTuneArguments, arch_cost, architecture: str, pretrain) -> str:
    """The checkpoint every fine-tuning starts from: trained on `pretrain` and saved once (to a staging folder,
    then renamed), loaded afterwards."""
    from transformers import Trainer, TrainingArguments

    from hf_ingrain.files import atomic_folder

    path = os.path.join(args.output_dir, f"pretrained-{architecture}")
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    model = arch_cost.build(architecture, seed=1234)
    training = TrainingArguments(
        output_dir=os.path.join(args.output_dir, "scratch"), num_train_epochs=args.pretrain_epochs,
        learning_rate=args.learning_rate or arch_cost.LEARNING_RATES[architecture],
        per_device_train_batch_size=args.batch_size, seed=1234, save_strategy="no", report_to="none",
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True, logging_strategy="no",
    )
    Trainer(model=model, args=training, train_dataset=pretrain["owner"]).train()
    logger.info("Pretrained %s: accuracy %.3f on its own test set.", architecture,
                arch_cost.accuracy(model, pretrain["test"]))
    with atomic_folder(path, what="the pretrained checkpoint", replace=True) as staging:
        model.save_pretrained(staging)
    return path


def from_pretrained(path: str, num_labels: int):
    """The checkpoint loaded as a user's fine-tuning script loads it."""
    from transformers import AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a new head is expected when the label sets differ
    try:
        return AutoModelForImageClassification.from_pretrained(path, num_labels=num_labels,
                                                               ignore_mismatched_sizes=True)
    finally:
        hf_logging.set_verbosity(verbosity)


def with_lora(model, architecture: str, r: int):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=LORA_TARGETS[architecture],
                        modules_to_save=["classifier"])
    return get_peft_model(model, config)


def measure(args: FineTuneArguments, arch_cost, splits, key, architecture: str, seed: int, checkpoint: str,
            second_key=None):
    """The rows of one architecture and seed: the fine-tunings, then the students of each ingrained model."""
    from transformers import Trainer, TrainingArguments

    from hf_ingrain import DistillationConfig, DistillationTrainer, IngrainConfig, IngrainTrainer

    learning_rate = args.learning_rate or arch_cost.LEARNING_RATES[architecture]
    common = dict(num_train_epochs=args.num_train_epochs, per_device_train_batch_size=args.batch_size, seed=seed,
                  data_seed=seed, save_strategy="no", report_to="none", use_cpu=not torch.cuda.is_available(),
                  disable_tqdm=True, logging_strategy="no")
    scratch = os.path.join(args.output_dir, "scratch")
    num_labels = int(splits["test"][:]["labels"].max()) + 1
    rows, models = [], {}

    def record(kind, model, started, trainable):
        row = arch_cost.verified_row(model, key, splits["test"], started, args.label_only, second_key,
                                     architecture=architecture, seed=seed, model=kind, trainable_parameters=trainable)
        rows.append(row)
        logger.info("%s", row)

    for kind in fine_tunings(args):
        started = time.perf_counter()
        lora = kind.endswith("lora")
        model = from_pretrained(checkpoint, num_labels)
        if lora:
            model = with_lora(model, architecture, args.lora_r)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rate = (args.lora_learning_rate or 4 * learning_rate) if lora else learning_rate
        if kind.startswith("plain"):
            Trainer(model=model, args=TrainingArguments(output_dir=scratch, learning_rate=rate, **common),
                    train_dataset=splits["owner"]).train()
        else:
            config = IngrainConfig(output_dir=scratch, learning_rate=rate, ingrain_lambda=args.ingrain_lambda,
                                   ingrain_temperature=args.ingrain_temperature,
                                   ingrain_exclude_label=args.ingrain_exclude_label,
                                   ingrain_lambda_mode=args.ingrain_lambda_mode, **common)
            IngrainTrainer(model=model, args=config, train_dataset=splits["owner"], ingrainer=key,
                           strength_dataset=splits["held_out"]).train()
        if lora:
            model = model.merge_and_unload()  # the model a LoRA user publishes
        record(kind, model, started, trainable)
        models[kind] = model

    for lora, teacher in (("", models["ingrain"]), ("_lora", models["ingrain_lora"])):
        for student_kind in args.students:
            started = time.perf_counter()
            student = from_pretrained(checkpoint, num_labels)  # the attacker starts from the public checkpoint
            output = dict(teacher_output="label") if student_kind == "label" else dict(temperature=float(student_kind))
            config = DistillationConfig(output_dir=scratch, learning_rate=learning_rate, **output, **common)
            DistillationTrainer(model=student, teacher=teacher, args=config, train_dataset=splits["attacker"]).train()
            record(arch_cost.student_name(student_kind) + lora, student, started,
                   sum(p.numel() for p in student.parameters()))
    return rows


def table(rows: list[dict]) -> str:
    """Per architecture and way of fine-tuning: accuracy (mean ± sd over seeds), cost against the plain fine-tuning,
    the largest p-value of the ingrained models and of their students (the one that must clear alpha), and the
    smallest of the models that never saw the key."""
    from hf_ingrain.verification.statistics import format_p_value

    def cell(values, digits=3):
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}" if values else "-"

    def p_values(selected, pick):
        if not selected:
            return "-"
        verified = sum(row["verified"] for row in selected)
        return f"p {format_p_value(pick(row['p_value'] for row in selected))} ({verified}/{len(selected)} verified)"

    lines = ["| model | fine-tuning | plain | ingrain | cost (points) | ingrain: largest p | T = 4 student | "
             "student: largest p | never keyed: smallest p |", "|---|---|---|---|---|---|---|---|---|"]
    for architecture in dict.fromkeys(row["architecture"] for row in rows):
        of = {kind: [r for r in rows if r["architecture"] == architecture and r["model"] == kind]
              for kind in KINDS + ("base",)}
        for label, suffix in (("full", ""), ("LoRA", "_lora")):
            plain = [r["accuracy"] for r in of["plain" + suffix]]
            ingrain = [r["accuracy"] for r in of["ingrain" + suffix]]
            cost = [100 * (p - i) for p, i in zip(plain, ingrain)]
            innocent = of["plain" + suffix] + of["base"]
            lines.append(
                f"| {architecture} | {label} | {cell(plain)} | {cell(ingrain)} | {cell(cost, 1)} | "
                f"{p_values(of['ingrain' + suffix], max)} | {cell([r['accuracy'] for r in of['student' + suffix]])} | "
                f"{p_values(of['student' + suffix], max)} | {p_values(innocent, min)} |"
            )
    return "\n".join(lines)


def main(argv=None):
    from transformers import HfArgumentParser

    from hf_ingrain.files import write_json

    (args,) = HfArgumentParser(FineTuneArguments).parse_args_into_dataclasses(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("transformers").setLevel(logging.WARNING)
    arch_cost = _arch_cost()
    rows = arch_cost.read_rows(args.results_file)
    splits = arch_cost.load_splits(args.data, args.train_size)
    pretrain = arch_cost.load_splits(args.pretrain_data, args.pretrain_size)
    key, second_key = arch_cost.committed_keys(args, splits)

    def save():
        write_json(args.results_file, {"arguments": asdict(args), "rows": rows})

    for architecture in args.architectures:
        checkpoint = pretrained_checkpoint(args, arch_cost, architecture, pretrain)
        if not any(r["architecture"] == architecture and r["model"] == "base" for r in rows):
            started = time.perf_counter()
            base = from_pretrained(checkpoint, int(splits["test"][:]["labels"].max()) + 1)
            rows.append(arch_cost.verified_row(base, key, splits["test"], started, args.label_only,
                                               architecture=architecture, seed=None, model="base"))
            save()
        for seed in args.seeds:
            if arch_cost.seed_done(rows, architecture, seed, kinds(args, arch_cost)):
                continue
            rows = arch_cost.without_seed(rows, architecture, seed)
            rows += measure(args, arch_cost, splits, key, architecture, seed, checkpoint, second_key)
            save()
    print(table(rows))
    print()
    print(arch_cost.long_table(rows))  # every kind of model, students and labels-only tests included
    return 0


if __name__ == "__main__":
    sys.exit(main())
