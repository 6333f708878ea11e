"""The distillation attack (Hinton et al. 2015, https://huggingface.co/papers/1503.02531). Threat model: black-box
access to the watermarked model's answers (logits, rounded probabilities, top-k scores or only labels, as
`teacher_output` says) on the attacker's own data of the task, its labels used only with `teacher_weight` < 1; the
thief trains a fresh student, of the teacher's architecture or another, without the owner's data.

Its class is the `Trainer` pair [`~hf_ingrain.DistillationConfig`] + [`~hf_ingrain.DistillationTrainer`], kept with
the other trainers in `hf_ingrain.trainer` (its verb: `DistillationTrainer.train()`); this file registers it: its
`hf-ingrain attack distill` subcommand and its benchmark columns.
"""

import copy
import tempfile
import warnings
from dataclasses import asdict, dataclass, field

import torch

from ..trainer.distillation_config import TEACHER_OUTPUTS
from .arguments import attacker_data
from .registry import AttackSpec, BenchmarkColumns
from .students import STUDENT_ARCHITECTURES, build_student


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


def _run_cli(teacher, target, training, distill: DistillArguments):
    from ..trainer import DistillationConfig, DistillationTrainer

    if distill.alpha is not None:
        warnings.warn("`--alpha` is deprecated: use `--teacher_weight`.", FutureWarning, stacklevel=2)
        distill.teacher_weight, distill.alpha = distill.alpha, None
    data = attacker_data(training)
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


def _distill_column(student, teacher, context, **teacher_settings):
    """`student` trained on the teacher's answers on the attacker's split, `attack_epochs` at the run's scale."""
    from ..trainer import DistillationConfig, DistillationTrainer

    args = DistillationConfig(
        **context.training_args(context.seed, context.config.attack_epochs), teacher_weight=1.0, **teacher_settings
    )
    teacher = copy.deepcopy(teacher)  # the trainer freezes its teacher: a copy, the model goes on to the next attacks
    DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=context.attacker).train()
    return student.eval()


def _same_architecture(match, teacher, context):  # distill_T<T>[_small]: a student of the owner's architecture
    student = context.new_model(context.seed, small=match[2] is not None)
    return _distill_column(student, teacher, context, temperature=float(match[1]), teacher_output="logits")


def _hard_label(match, teacher, context):  # the teacher's labels only
    return _distill_column(context.new_model(context.seed, small=False), teacher, context, teacher_output="label")


def _other_architecture(match, teacher, context):  # distill_T<T>_<resnet|convnext|vit>
    student = build_student(teacher, match[2], context.input_shape, seed=context.seed)
    return _distill_column(student, teacher, context, temperature=float(match[1]), teacher_output="logits")


ATTACK = AttackSpec(
    name="distill",
    help="Distil a student from the model.",
    arguments=(DistillArguments,),
    run_cli=_run_cli,
    trains=True,
    card_name="distillation",
    columns=(
        BenchmarkColumns(
            r"distill_T(\d+(?:\.\d+)?)(_small)?", _same_architecture,
            names=("distill_T1", "distill_T4", "distill_T4_small"),
        ),
        BenchmarkColumns("hard_label", _hard_label, names=("hard_label",)),
        BenchmarkColumns(
            r"distill_T(\d+(?:\.\d+)?)_(resnet|convnext|vit)", _other_architecture,
            names=("distill_T4_vit", "distill_T4_convnext"), grammar="distill_T<T>_<resnet|convnext|vit>",
        ),
    ),
)
