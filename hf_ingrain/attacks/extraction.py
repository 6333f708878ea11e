"""Model extraction: a student trained on the stolen model's answers to the attacker's queries, with or without the
owner's data, of any architecture, from the stolen model alone or mixed with others."""

import copy
import tempfile

import torch
from torch import nn

from ..trainer.distillation_config import TEACHER_OUTPUTS
from .ensemble import EnsembleModel
from .query_sources import QUERY_SOURCES, image_tensor, make_queries
from .students import STUDENT_ARCHITECTURES, build_student


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
