"""`hf-ingrain attack {distill,finetune,fineprune,prune,quantize,noise}`: attack a saved model, save it with its card.

    hf-ingrain attack distill  --model PATH_OR_ID --output DIR [--data NAME_OR_PATH] [--temperature 4] ...
    hf-ingrain attack finetune --model PATH_OR_ID --output DIR [--data NAME_OR_PATH] [--mode FTAL] ...
    hf-ingrain attack fineprune --model PATH_OR_ID --output DIR [--data NAME_OR_PATH] [--rate 0.5] ...
    hf-ingrain attack prune    --model PATH_OR_ID --output DIR [--rate 0.5]
    hf-ingrain attack quantize --model PATH_OR_ID --output DIR [--bits 8]
    hf-ingrain attack noise    --model PATH_OR_ID --output DIR [--scale 0.1]

Every attack's arguments are dataclasses parsed with [`~hf_ingrain.scripts.IngrainParser`], so each field is a flag
(with underscores or dashes) and `--config file.yaml` reads them from a file. The attacker's data is the `attacker`
split of [`~hf_ingrain.data.load_image_dataset`] (default: the embedded MNIST sample). The target is loaded with
[`~hf_ingrain.suspects.load_model`]: safetensors only, no repository code, one commit.
"""

import copy
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch

from ..trainer.distillation_config import TEACHER_OUTPUTS

ATTACKS = ("distill", "finetune", "fineprune", "prune", "quantize", "noise")


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
        student_arch (`str`, *optional*, defaults to `"same"`): `"same"` (a fresh copy of the teacher's architecture)
            or `"small"` (a small CNN).
        alpha (`float`, *optional*): deprecated name of `teacher_weight`.
    """

    temperature: float = field(default=4.0, metadata={"help": "Softmax temperature of the soft loss."})
    teacher_weight: float = field(default=1.0, metadata={"help": "Weight of the teacher term (1.0: no labels used)."})
    teacher_output: str = field(
        default="logits", metadata={"help": "What the teacher exposes.", "choices": list(TEACHER_OUTPUTS)}
    )
    top_k: int = field(default=5, metadata={"help": "Scores exposed with --teacher_output top_k."})
    probability_decimals: int = field(default=4, metadata={"help": "Decimals exposed with --teacher_output probabilities."})
    student_arch: Literal["same", "small"] = field(
        default="same", metadata={"help": "'same': a fresh copy of the teacher's architecture; 'small': a small CNN."}
    )
    alpha: float | None = field(default=None, metadata={"help": "Deprecated: use --teacher_weight."})


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
    "finetune": [AttackArguments, AttackTrainingArguments, FinetuneArguments],
    "fineprune": [AttackArguments, AttackTrainingArguments, FinePruneArguments],
    "prune": [AttackArguments, PruneArguments],
    "quantize": [AttackArguments, QuantizeArguments],
    "noise": [AttackArguments, NoiseArguments],
}
HELP = {
    "distill": "Distil a student from the model.",
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
    model = load_model(target.model, revision=target.revision)
    verbs = {
        "distill": _distill, "finetune": _finetune, "fineprune": _fineprune, "prune": _prune, "quantize": _quantize,
        "noise": _noise,
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


def _student(teacher, arch: str, example, seed: int):
    from ..models import build_classifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "same":
            return type(teacher)(copy.deepcopy(teacher.config))
        return build_classifier(
            "small_cnn", num_labels=teacher.config.num_labels, input_shape=tuple(example["pixel_values"].shape),
            hidden_sizes=[8, 16], hidden_size=32, id2label=teacher.config.id2label,
        )


def _distill(teacher, target: AttackArguments, training: AttackTrainingArguments, distill: DistillArguments):
    from ..trainer import DistillationConfig, DistillationTrainer

    if distill.alpha is not None:
        warnings.warn("`--alpha` is deprecated: use `--teacher_weight`.", FutureWarning, stacklevel=2)
        distill.teacher_weight, distill.alpha = distill.alpha, None
    data = _attacker_data(training)
    student = _student(teacher, distill.student_arch, data[0], target.seed)
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
