"""Model extraction: a student trained on the stolen model's answers to the attacker's queries, with or without the
owner's data, of any architecture, from the stolen model alone or mixed with others."""

import copy
import math
import tempfile
from dataclasses import dataclass, field

import torch
from torch import nn

from ..trainer.distillation_config import TEACHER_OUTPUTS
from .arguments import attacker_data
from .distillation import DistillArguments
from .ensemble import EnsembleModel
from .query_sources import QUERY_SOURCES, image_tensor, make_queries
from .registry import AttackSpec, BenchmarkColumns
from .students import STUDENT_ARCHITECTURES, build_student

# what the teacher exposes, as a benchmark column's suffix (`extract_data_10k_labels`) and as `teacher_output`
EXTRACTION_OUTPUTS = {"logits": "logits", "topk": "top_k", "labels": "label"}


def input_shape_of(model, example=None) -> tuple[int, int, int] | None:
    """`(channels, height, width)` of an image model's inputs: from an example, else from its config."""
    if example is not None and "pixel_values" in example:
        return tuple(torch.as_tensor(example["pixel_values"]).shape)
    config = getattr(model, "config", None)
    channels, size = getattr(config, "num_channels", None), getattr(config, "image_size", None)
    if channels is None or size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (int(channels), int(height), int(width))


class ExtractionAttack:
    r"""
    Model extraction (Tramèr et al. 2016; Orekondy et al. 2019, "Knockoff Nets"): the attacker sends the stolen model
    `num_queries` inputs of their own and trains a student on its answers, at a softmax temperature, as
    [`~hf_ingrain.DistillationTrainer`] does.

    Threat model: black-box access to the watermarked model (its logits, top-k scores or only labels, as
    `teacher_output` says) and no access to the owner's data: the queries come from `queries` (the attacker's own
    images of the task, another data set, noise, random strokes, or mixup of a handful of images; see
    [`make_queries`]), and the budget is `num_queries`. The thief may mix the stolen model with models of their own
    (`ensemble_with`: the student learns the average of their probabilities) and train a student of another
    architecture (`student`). An ingrained watermark lives in the stolen model's predictions on ordinary inputs; how
    much of it a student keeps depends on how close the queries come to those inputs.

    Args:
        teacher (`nn.Module`): the watermarked (stolen) model.
        queries (`str`, *optional*, defaults to `"digits"`): the query source, one of `QUERY_SOURCES`.
        num_queries (`int`, *optional*, defaults to 10,000): the query budget: inputs sent to the teacher.
        teacher_output (`str`, *optional*, defaults to `"logits"`): what the teacher answers
            (`DistillationConfig.teacher_output`: `"logits"`, `"probabilities"`, `"top_k"` or `"label"`).
        temperature (`float`, *optional*, defaults to 4.0): distillation temperature.
        top_k (`int`, *optional*, defaults to 5): scores exposed with `teacher_output="top_k"`.
        student (`str` or `nn.Module`, *optional*, defaults to `"same"`): see [`build_student`].
        ensemble_with (`list[nn.Module]`, *optional*): the thief's own models, averaged with the teacher.
        images (`datasets.Dataset`, *optional*): the attacker's images, for `queries="data"` or `"mixup"`.
        num_images (`int`, *optional*): how many of `images` the attacker has (see [`make_queries`]).
        input_shape (`tuple[int, int, int]`, *optional*): the model's input shape (default: read from `images` or the
            teacher's config).
        value_range (`tuple[float, float]`, *optional*, defaults to `(0.0, 1.0)`): the model's pixel range, where
            synthetic queries are drawn.
        num_train_epochs (`float`, *optional*, defaults to 10): passes of the student over the queries.
        max_steps (`int`, *optional*, defaults to -1): if positive, train this many steps instead.
        batch_size (`int`, *optional*, defaults to 64), learning_rate (`float`, *optional*, defaults to 1e-3):
            the student's optimisation.
        seed (`int`, *optional*, defaults to 0): seed of the queries, the student's weights and the batch order.

    Example:

    ```python
    >>> from hf_ingrain.attacks import ExtractionAttack
    >>> attack = ExtractionAttack(teacher, queries="digits", num_queries=1_000, student="vit", num_train_epochs=1)
    >>> student = attack.run()
    >>> attack.parameters["num_queries"] == 1000 and student.config.model_type == "vit"
    True
    ```
    """

    def __init__(
        self,
        teacher,
        *,
        queries: str = "digits",
        num_queries: int = 10_000,
        teacher_output: str = "logits",
        temperature: float = 4.0,
        top_k: int = 5,
        student="same",
        ensemble_with: list | None = None,
        images=None,
        num_images: int | None = None,
        input_shape: tuple[int, int, int] | None = None,
        value_range: tuple[float, float] = (0.0, 1.0),
        num_train_epochs: float = 10,
        max_steps: int = -1,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        seed: int = 0,
    ):
        if not isinstance(teacher, nn.Module):
            raise ValueError(f"`teacher` must be a model, got {type(teacher).__name__}.")
        if queries not in QUERY_SOURCES:
            raise ValueError(f"Unknown query source {queries!r}: choose among {list(QUERY_SOURCES)}.")
        if not isinstance(num_queries, int) or num_queries < 1:
            raise ValueError(f"`num_queries` (the query budget) must be a positive integer, got {num_queries!r}.")
        if teacher_output not in TEACHER_OUTPUTS:
            raise ValueError(f"`teacher_output` must be one of {TEACHER_OUTPUTS}, got {teacher_output!r}.")
        if not isinstance(student, nn.Module) and student not in STUDENT_ARCHITECTURES:
            raise ValueError(f"Unknown student architecture {student!r}: choose among {list(STUDENT_ARCHITECTURES)}.")
        if not (num_train_epochs > 0 or max_steps > 0):
            raise ValueError("Train for `num_train_epochs` > 0 or `max_steps` > 0.")
        if queries in ("data", "mixup") and images is None:
            raise ValueError(f"Query source {queries!r} needs the attacker's `images` (a data set with `pixel_values`).")
        self.teacher = teacher
        self.ensemble_with = list(ensemble_with or [])
        self.student, self.images = student, images
        if input_shape is None:
            input_shape = tuple(image_tensor(images).shape[1:]) if images is not None else input_shape_of(teacher)
        if input_shape is None:
            raise ValueError(
                "Cannot tell the teacher's input shape (its config has no `num_channels` and `image_size`): pass "
                "`input_shape=(channels, height, width)`."
            )
        self.parameters = {
            "queries": queries, "num_queries": num_queries, "teacher_output": teacher_output,
            "temperature": temperature, "top_k": top_k,
            "student": student if isinstance(student, str) else type(student).__name__,
            "ensemble_size": 1 + len(self.ensemble_with), "num_images": num_images, "input_shape": list(input_shape),
            "value_range": list(value_range), "num_train_epochs": num_train_epochs, "max_steps": max_steps,
            "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
        }
        self.query_set = None

    def run(self) -> nn.Module:
        """Builds the queries, trains the student on the teacher's answers, and returns it (in eval mode)."""
        from ..trainer import DistillationConfig, DistillationTrainer

        p = self.parameters
        self.query_set = make_queries(
            p["queries"], p["num_queries"], tuple(p["input_shape"]), tuple(p["value_range"]), images=self.images,
            num_images=p["num_images"], seed=p["seed"],
        )
        members = [self.teacher] + self.ensemble_with
        teacher = EnsembleModel([copy.deepcopy(m) for m in members]) if self.ensemble_with else copy.deepcopy(self.teacher)
        student = build_student(teacher, self.student, tuple(p["input_shape"]), seed=p["seed"])
        p["student_parameters"] = sum(parameter.numel() for parameter in student.parameters())
        with tempfile.TemporaryDirectory() as scratch:
            args = DistillationConfig(
                output_dir=scratch, temperature=p["temperature"], teacher_weight=1.0, teacher_output=p["teacher_output"],
                top_k=p["top_k"], num_train_epochs=p["num_train_epochs"], max_steps=p["max_steps"],
                per_device_train_batch_size=p["batch_size"], learning_rate=p["learning_rate"], seed=p["seed"],
                report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
                use_cpu=not torch.cuda.is_available(),
            )
            DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=self.query_set).train()
        return student.eval()


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


def _run_cli(teacher, target, training, distill, extract: ExtractArguments):
    from ..suspects import load_model

    if distill.teacher_weight != 1.0 or distill.alpha is not None:
        raise ValueError(
            "`extract` learns from the target's answers alone (its queries have no labels): drop --teacher_weight, or "
            "use `distill` on labelled data."
        )
    others = [load_model(path) for path in extract.ensemble_with]
    data = attacker_data(training)  # the images of `data` and `mixup`; the input shape for every source
    attack = ExtractionAttack(
        teacher, queries=extract.queries, num_queries=extract.num_queries, teacher_output=distill.teacher_output,
        temperature=distill.temperature, top_k=distill.top_k, student=distill.student_arch, ensemble_with=others,
        images=data, num_images=extract.num_images, value_range=tuple(extract.value_range),
        num_train_epochs=training.epochs, max_steps=training.max_steps, batch_size=training.batch_size or 64,
        learning_rate=training.learning_rate, seed=target.seed,
    )
    student = attack.run()
    return student, {**attack.parameters, "data": training.data or "mnist-5k", "ensemble_with": extract.ensemble_with}


def _extract_column(match, teacher, context):
    """extract_<source>_<N>k[_logits|_topk|_labels]: as many steps as distill_T4, only the queries differ."""
    source, thousands, output = match.groups()
    config, attacker = context.config, context.attacker
    return ExtractionAttack(
        teacher, queries=source, num_queries=int(thousands) * 1000, temperature=4.0,
        teacher_output=EXTRACTION_OUTPUTS[output or "logits"], student=context.new_model(context.seed),
        images=attacker, max_steps=config.attack_epochs * math.ceil(len(attacker) / config.batch_size),
        batch_size=config.batch_size, learning_rate=config.learning_rate, seed=context.seed,
    ).run()


def _check_budget(match):
    if int(match[2]) < 1:
        raise ValueError(f"Attack {match[0]!r}: the query budget must be at least 1k.")


def _ensemble_column(match, teacher, context):
    """ensemble_<n>: distill_T4 from the average of the teacher and n - 1 models of the thief's own."""
    others = [context.thief_model(index) for index in range(int(match[1]) - 1)]
    config, attacker = context.config, context.attacker
    return ExtractionAttack(
        teacher, queries="data", num_queries=len(attacker), images=attacker, ensemble_with=others, temperature=4.0,
        student=context.new_model(context.seed), num_train_epochs=config.attack_epochs, batch_size=config.batch_size,
        learning_rate=config.learning_rate, seed=context.seed,
    ).run()


_SOURCES, _OUTPUTS = "|".join(QUERY_SOURCES), "|".join(EXTRACTION_OUTPUTS)
ATTACK = AttackSpec(
    name="extract",
    help="Extract a student from the model's answers to queries other than the owner's data.",
    arguments=(DistillArguments, ExtractArguments),
    run_cli=_run_cli,
    trains=True,
    columns=(
        BenchmarkColumns(
            rf"extract_({_SOURCES})_(\d+)k(?:_({_OUTPUTS}))?", _extract_column,
            names=(
                "extract_data_1k", "extract_data_10k", "extract_data_30k", "extract_data_10k_labels",
                "extract_digits_10k", "extract_strokes_10k", "extract_mixup_10k", "extract_noise_10k",
            ),
            grammar=f"extract_<source>_<N>k[_logits|_topk|_labels] with a source of {list(QUERY_SOURCES)}",
            check=_check_budget,
        ),
        BenchmarkColumns(
            r"ensemble_([23])", _ensemble_column, names=("ensemble_2", "ensemble_3"), grammar="ensemble_<2|3>",
        ),
    ),
)
