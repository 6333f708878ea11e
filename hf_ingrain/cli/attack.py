"""`hf-ingrain attack {distill,extract,overwrite,finetune,fineprune,prune,quantize,noise}`: attack a saved model, save
it with its card.

    hf-ingrain attack distill  --model PATH_OR_ID --output DIR [--data NAME_OR_PATH] [--temperature 4] ...
    hf-ingrain attack extract  --model PATH_OR_ID --output DIR --queries strokes --num_queries 10000 [--student_arch vit]
    hf-ingrain attack overwrite --model PATH_OR_ID --output DIR --key_output THIEF_KEY_DIR [--data NAME_OR_PATH]
    hf-ingrain attack finetune --model PATH_OR_ID --output DIR [--data NAME_OR_PATH] [--mode FTAL] ...
    hf-ingrain attack fineprune --model PATH_OR_ID --output DIR [--data NAME_OR_PATH] [--rate 0.5] ...
    hf-ingrain attack prune    --model PATH_OR_ID --output DIR [--rate 0.5]
    hf-ingrain attack quantize --model PATH_OR_ID --output DIR [--bits 8]
    hf-ingrain attack noise    --model PATH_OR_ID --output DIR [--scale 0.1]

Every attack's arguments are dataclasses parsed with [`~hf_ingrain.scripts.IngrainParser`], so each field is a flag
(with underscores or dashes) and `--config file.yaml` reads them from a file. The attacker's data is the `attacker`
split of [`~hf_ingrain.data.load_image_dataset`] (default: the embedded MNIST sample). The target is loaded with
[`~hf_ingrain.suspects.load_model`]: safetensors only, no repository code, one commit. Attacks chain through their
folders: `--model` of one attack is the `--output` of the previous one (prune, then finetune, then distill).
"""

import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch

from ..trainer.distillation_config import TEACHER_OUTPUTS

ATTACKS = ("distill", "extract", "overwrite", "finetune", "fineprune", "prune", "quantize", "noise")
STUDENT_ARCHITECTURES = ("same", "small", "resnet", "convnext", "vit")


@dataclass
class AttackArguments:
    r"""
    What every attack takes: the target, the output folder and a seed.

    Args:
        model (`str`): the target, a folder written by `save_pretrained` or a Hub id.
        output (`str`): a new folder for the attacked model and its card.
        revision (`str`, *optional*): for a Hub id, the branch, tag or commit sha to attack.
        seed (`int`, *optional*, defaults to 0): seed of initialisation and training order.
    """

    model: str = field(metadata={"help": "The target: a folder written by save_pretrained, or a Hub id."})
    output: str = field(metadata={"help": "New folder for the attacked model and its card."})
    revision: str | None = field(default=None, metadata={"help": "For a Hub id: branch, tag or commit sha."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation and training order."})


@dataclass
class AttackTrainingArguments:
    r"""
    What the attacks that train (distill, finetune) take: the attacker's data and the optimisation.

    Args:
        data (`str`, *optional*): data set name, Hub id or folder; its `attacker` split is used (default: mnist-5k).
        epochs (`float`, *optional*, defaults to 20): passes over the attacker's data.
        max_steps (`int`, *optional*, defaults to -1): if positive, train this many steps instead.
        batch_size (`int`, *optional*): examples per step (default: 64 for distill, 100 for finetune).
        learning_rate (`float`, *optional*, defaults to 1e-3): learning rate.
    """

    data: str | None = field(default=None, metadata={"help": "Data set name, Hub id or folder (default: mnist-5k)."})
    epochs: float = field(default=20, metadata={"help": "Passes over the attacker's data."})
    max_steps: int = field(default=-1, metadata={"help": "If positive, train this many steps instead."})
    batch_size: int | None = field(default=None, metadata={"help": "Examples per step (distill 64, finetune 100)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate."})


@dataclass
class DistillArguments:
    r"""
    The distillation attack ([`~hf_ingrain.DistillationConfig`]'s fields, and the student's architecture).

    Args:
        temperature (`float`, *optional*, defaults to 4.0): softmax temperature of the soft loss.
        teacher_weight (`float`, *optional*, defaults to 1.0): weight of the teacher term (1.0: no labels used).
        teacher_output (`str`, *optional*, defaults to `"logits"`): what the teacher exposes.
        top_k (`int`, *optional*, defaults to 5): scores exposed with `--teacher_output top_k`.
        probability_decimals (`int`, *optional*, defaults to 4): decimals exposed with `--teacher_output probabilities`.
        student_arch (`str`, *optional*, defaults to `"same"`): `"same"` (a fresh copy of the teacher's architecture),
            `"small"` (a small CNN), or a tiny `resnet`, `convnext` or `vit` from `transformers` (see
            [`~hf_ingrain.attacks.build_student`]).
        alpha (`float`, *optional*): deprecated name of `teacher_weight`.
    """

    temperature: float = field(default=4.0, metadata={"help": "Softmax temperature of the soft loss."})
    teacher_weight: float = field(default=1.0, metadata={"help": "Weight of the teacher term (1.0: no labels used)."})
    teacher_output: str = field(
        default="logits", metadata={"help": "What the teacher exposes.", "choices": list(TEACHER_OUTPUTS)}
    )
    top_k: int = field(default=5, metadata={"help": "Scores exposed with --teacher_output top_k."})
    probability_decimals: int = field(default=4, metadata={"help": "Decimals exposed with --teacher_output probabilities."})
    student_arch: str = field(
        default="same",
        metadata={
            "help": "'same': a fresh copy of the teacher's architecture; 'small': a small CNN; resnet, convnext, vit: "
            "tiny transformers models.",
            "choices": list(STUDENT_ARCHITECTURES),
        },
    )
    alpha: float | None = field(default=None, metadata={"help": "Deprecated: use --teacher_weight."})


@dataclass
class ExtractArguments:
    r"""
    Extraction without the owner's data (see [`~hf_ingrain.attacks.ExtractionAttack`]): the student learns the
    teacher's answers to `num_queries` queries from `queries`.

    Args:
        queries (`str`, *optional*, defaults to `"digits"`): `data` (the attacker's images of `--data`, cycled with
            random shifts), `digits` (scikit-learn's 8 x 8 digits, upscaled), `noise`, `strokes` or `mixup` (of
            `--num_images` of the attacker's images).
        num_queries (`int`, *optional*, defaults to 10,000): the query budget.
        num_images (`int`, *optional*): how many of the attacker's images `data` and `mixup` use.
        ensemble_with (`list[str]`, *optional*): the thief's own models (folders or Hub ids), averaged with the target.
        value_range (`list[float]`, *optional*, defaults to `[0, 1]`): the model's pixel range after preprocessing.
    """

    queries: str = field(
        default="digits",
        metadata={"help": "Where the queries come from.", "choices": ["data", "digits", "noise", "strokes", "mixup"]},
    )
    num_queries: int = field(default=10_000, metadata={"help": "The query budget: inputs sent to the target."})
    num_images: int | None = field(default=None, metadata={"help": "Attacker's images used by data and mixup."})
    ensemble_with: list[str] = field(
        default_factory=list, metadata={"help": "The thief's own models, averaged with the target.", "nargs": "*"}
    )
    value_range: list[float] = field(
        default_factory=lambda: [0.0, 1.0], metadata={"help": "The model's pixel range (low high) after preprocessing."}
    )

    def __post_init__(self):
        if self.num_queries < 1:
            raise ValueError(f"`--num_queries` (the query budget) must be >= 1, got {self.num_queries}.")
        if len(self.value_range) != 2 or not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"`--value_range` takes two numbers LOW HIGH with LOW < HIGH, got {self.value_range}.")


@dataclass
class OverwriteArguments:
    r"""
    Overwriting (see [`~hf_ingrain.attacks.OverwriteAttack`]): ingrain a key of the thief's own into the model.

    Args:
        key_output (`str`): a new folder for the thief's key (never inside the model's folder).
        key_seed (`int`, *optional*): seed of the thief's key (default: drawn from the operating system).
        num_carriers (`int`), ingrainer_steps (`int`), num_reference_keys (`int`): the key's settings.
        ingrain_lambda (`float`), ingrain_temperature (`float`): the thief's ingrain term.
        value_range (`list[float]`, *optional*, defaults to `[0, 1]`): the model's pixel range, for the carriers.
    """

    key_output: str = field(metadata={"help": "New folder for the thief's key (kept apart from the model)."})
    key_seed: int | None = field(default=None, metadata={"help": "Seed of the thief's key (experiments only)."})
    num_carriers: int = field(default=100, metadata={"help": "Carriers of the thief's key."})
    ingrainer_steps: int = field(default=600, metadata={"help": "Training steps of the thief's ingrainer."})
    num_reference_keys: int = field(default=16, metadata={"help": "Reference ingrainers of the thief's key."})
    ingrain_lambda: float = field(default=0.5, metadata={"help": "Weight of the thief's ingrain term."})
    ingrain_temperature: float = field(default=4.0, metadata={"help": "Temperature of the thief's ingrain term."})
    value_range: list[float] = field(
        default_factory=lambda: [0.0, 1.0], metadata={"help": "The model's pixel range (low high) after preprocessing."}
    )


@dataclass
class FinetuneArguments:
    """The fine-tuning attack of Adi et al. (see [`~hf_ingrain.attacks.FineTuneAttack`])."""

    mode: Literal["FTLL", "FTAL", "RTLL", "RTAL"] = field(
        default="FTAL",
        metadata={"help": "FT/RT: keep/re-initialise the last layer; LL/AL: then train the last layer/all layers."},
    )


@dataclass
class FinePruneArguments:
    """Fine-pruning (see [`~hf_ingrain.attacks.FinePruneAttack`]): prune dormant channels, then fine-tune (FTAL)."""

    rate: float = field(default=0.5, metadata={"help": "Share of the last convolution's channels to prune."})
    layer: str | None = field(default=None, metadata={"help": "Name of the convolution to prune (default: the last)."})


@dataclass
class PruneArguments:
    """Global magnitude pruning (see [`~hf_ingrain.attacks.PruneAttack`])."""

    rate: float = field(default=0.5, metadata={"help": "Fraction of the weights set to zero."})


@dataclass
class QuantizeArguments:
    """Uniform weight quantization (see [`~hf_ingrain.attacks.QuantizeAttack`]; its int8 `method="dynamic"` makes a
    model that cannot be saved as safetensors, so it is for Python only)."""

    bits: int = field(default=8, metadata={"help": "Bits per weight."})


@dataclass
class NoiseArguments:
    """Gaussian noise on the weights (see [`~hf_ingrain.attacks.WeightNoiseAttack`])."""

    scale: float = field(default=0.1, metadata={"help": "Noise std relative to each weight tensor's std (> 0)."})

    def __post_init__(self):
        if not self.scale > 0:
            raise ValueError(
                f"`--scale` must be > 0 (the noise's spread relative to each weight tensor's), got {self.scale}."
            )


ARGUMENTS = {
    "distill": [AttackArguments, AttackTrainingArguments, DistillArguments],
    "extract": [AttackArguments, AttackTrainingArguments, DistillArguments, ExtractArguments],
    "overwrite": [AttackArguments, AttackTrainingArguments, OverwriteArguments],
    "finetune": [AttackArguments, AttackTrainingArguments, FinetuneArguments],
    "fineprune": [AttackArguments, AttackTrainingArguments, FinePruneArguments],
    "prune": [AttackArguments, PruneArguments],
    "quantize": [AttackArguments, QuantizeArguments],
    "noise": [AttackArguments, NoiseArguments],
}
HELP = {
    "distill": "Distil a student from the model.",
    "extract": "Extract a student from the model's answers to queries other than the owner's data.",
    "overwrite": "Ingrain a key of the thief's own into the model (saved apart, in --key_output).",
    "finetune": "Fine-tune it (Adi et al. 2018).",
    "fineprune": "Prune the channels dormant on clean data, then fine-tune (Liu et al. 2018).",
    "prune": "Zero its smallest weights (global magnitude pruning).",
    "quantize": "Quantize its weights to k bits per tensor.",
    "noise": "Add Gaussian noise to its weights (relative to each tensor's spread).",
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("attack", help="Run a watermark-removal attack on a model and save the result.")
    parser.set_defaults(func=lambda args, rest=(): parser.print_help() or 2, parses_own_arguments=True)
    attacks = parser.add_subparsers(dest="attack", metavar="ATTACK")
    for name in ATTACKS:
        attacks.add_parser(name, help=HELP[name], add_help=False).set_defaults(func=run, parses_own_arguments=True)


def parse(attack: str, argv: list[str]) -> tuple:
    """The dataclasses of `attack` parsed from `argv` (the words after `hf-ingrain attack ATTACK`)."""
    from ..scripts import IngrainParser

    parser = IngrainParser(ARGUMENTS[attack], prog=f"hf-ingrain attack {attack}", description=HELP[attack])
    return parser.parse_args_and_config(argv)


def run(args, rest: list[str]) -> int:
    from ..files import check_new_folder
    from ..suspects import load_model

    parsed = parse(args.attack, rest)
    target = parsed[0]
    check_new_folder(target.output, what="the attacked model")  # before any long work
    if args.attack == "overwrite":
        key_output = parsed[-1].key_output
        check_new_folder(key_output, what="the thief's key")
        inside = os.path.commonpath([os.path.abspath(key_output), os.path.abspath(target.output)])
        if inside == os.path.abspath(target.output):
            raise ValueError(
                f"`--key_output` {key_output!r} is inside the model's folder {target.output!r}: a key never travels "
                "with its model. Choose a folder outside it."
            )
    model = load_model(target.model, revision=target.revision)
    verbs = {
        "distill": _distill, "extract": _extract, "overwrite": _overwrite, "finetune": _finetune,
        "fineprune": _fineprune, "prune": _prune, "quantize": _quantize, "noise": _noise,
    }
    attacked, parameters = verbs[args.attack](model, *parsed)
    from ..attacks.model_io import save_attacked_model

    name = {"distill": "distillation"}.get(args.attack, args.attack)
    path = save_attacked_model(attacked, target.output, name, parameters, source=target.model)
    print(f"{name}: saved the attacked model and its card to {path}")
    return 0


def _attacker_data(training: AttackTrainingArguments):
    from ..data import load_image_dataset

    return load_image_dataset(training.data)["attacker"]


def _distill(teacher, target: AttackArguments, training: AttackTrainingArguments, distill: DistillArguments):
    from ..trainer import DistillationConfig, DistillationTrainer

    if distill.alpha is not None:
        warnings.warn("`--alpha` is deprecated: use `--teacher_weight`.", FutureWarning, stacklevel=2)
        distill.teacher_weight, distill.alpha = distill.alpha, None
    from ..attacks import build_student

    data = _attacker_data(training)
    student = build_student(teacher, distill.student_arch, tuple(data[0]["pixel_values"].shape), target.seed)
    batch_size = training.batch_size or 64
    with tempfile.TemporaryDirectory() as scratch:
        config = DistillationConfig(
            output_dir=scratch, temperature=distill.temperature, teacher_weight=distill.teacher_weight,
            teacher_output=distill.teacher_output, top_k=distill.top_k,
            probability_decimals=distill.probability_decimals, num_train_epochs=training.epochs,
            max_steps=training.max_steps, per_device_train_batch_size=batch_size,
            learning_rate=training.learning_rate, seed=target.seed, report_to="none", save_strategy="no",
            logging_strategy="no", use_cpu=not torch.cuda.is_available(),
        )
        DistillationTrainer(model=student, teacher=teacher, args=config, train_dataset=data).train()
    parameters = {
        **{k: v for k, v in asdict(distill).items() if k != "alpha"}, "epochs": training.epochs,
        "max_steps": training.max_steps, "batch_size": batch_size, "learning_rate": training.learning_rate,
        "seed": target.seed, "data": training.data or "mnist-5k", "num_examples": len(data),
    }
    return student.eval(), parameters


def _extract(
    teacher, target: AttackArguments, training: AttackTrainingArguments, distill: DistillArguments,
    extract: ExtractArguments,
):
    from ..attacks import ExtractionAttack
    from ..suspects import load_model

    if distill.teacher_weight != 1.0 or distill.alpha is not None:
        raise ValueError(
            "`extract` learns from the target's answers alone (its queries have no labels): drop --teacher_weight, or "
            "use `distill` on labelled data."
        )
    others = [load_model(path) for path in extract.ensemble_with]
    data = _attacker_data(training)  # the images of `data` and `mixup`; the input shape for every source
    attack = ExtractionAttack(
        teacher, queries=extract.queries, num_queries=extract.num_queries, teacher_output=distill.teacher_output,
        temperature=distill.temperature, top_k=distill.top_k, student=distill.student_arch, ensemble_with=others,
        images=data, num_images=extract.num_images, value_range=tuple(extract.value_range),
        num_train_epochs=training.epochs, max_steps=training.max_steps, batch_size=training.batch_size or 64,
        learning_rate=training.learning_rate, seed=target.seed,
    )
    student = attack.run()
    return student, {**attack.parameters, "data": training.data or "mnist-5k", "ensemble_with": extract.ensemble_with}


def _overwrite(model, target: AttackArguments, training: AttackTrainingArguments, overwrite: OverwriteArguments):
    from ..attacks import OverwriteAttack

    data = _attacker_data(training)
    attack = OverwriteAttack(
        model, key_seed=overwrite.key_seed, num_carriers=overwrite.num_carriers,
        ingrainer_steps=overwrite.ingrainer_steps, num_reference_keys=overwrite.num_reference_keys,
        value_range=tuple(overwrite.value_range), ingrain_lambda=overwrite.ingrain_lambda,
        ingrain_temperature=overwrite.ingrain_temperature, num_train_epochs=training.epochs,
        max_steps=training.max_steps, batch_size=training.batch_size or 64, learning_rate=training.learning_rate,
        seed=target.seed,
    )
    attacked = attack.run(data)
    attack.key.save(overwrite.key_output)
    print(f"overwrite: saved the thief's key to {overwrite.key_output} (commitment {attack.key.commitment()})")
    return attacked, {**attack.parameters, "data": training.data or "mnist-5k", "num_examples": len(data)}


def _finetune(model, target: AttackArguments, training: AttackTrainingArguments, finetune: FinetuneArguments):
    from ..attacks import FineTuneAttack

    data = _attacker_data(training)
    attack = FineTuneAttack(
        model, mode=finetune.mode, learning_rate=training.learning_rate, num_train_epochs=training.epochs,
        batch_size=training.batch_size or 100, max_steps=training.max_steps, seed=target.seed,
    )
    return attack.run(data), {**attack.parameters, "data": training.data or "mnist-5k", "num_examples": len(data)}


def _fineprune(model, target: AttackArguments, training: AttackTrainingArguments, fineprune: FinePruneArguments):
    from ..attacks import FinePruneAttack

    data = _attacker_data(training)
    attack = FinePruneAttack(
        model, rate=fineprune.rate, layer=fineprune.layer, learning_rate=training.learning_rate,
        num_train_epochs=training.epochs, batch_size=training.batch_size or 100, max_steps=training.max_steps,
        seed=target.seed,
    )
    return attack.run(data), {**attack.parameters, "data": training.data or "mnist-5k", "num_examples": len(data)}


def _prune(model, target: AttackArguments, prune: PruneArguments):
    from ..attacks import PruneAttack

    attack = PruneAttack(model, rate=prune.rate)
    return attack.run(), attack.parameters


def _quantize(model, target: AttackArguments, quantize: QuantizeArguments):
    from ..attacks import QuantizeAttack

    attack = QuantizeAttack(model, bits=quantize.bits, method="uniform")
    return attack.run(), attack.parameters


def _noise(model, target: AttackArguments, noise: NoiseArguments):
    from ..attacks import WeightNoiseAttack

    attack = WeightNoiseAttack(model, scale=noise.scale, seed=target.seed)
    return attack.run(), attack.parameters
