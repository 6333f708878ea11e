"""Training arguments of [`DistillationTrainer`]."""

from dataclasses import dataclass, field

from transformers import TrainingArguments

TEACHER_OUTPUTS = ("logits", "probabilities", "top_k", "label")


@dataclass
class DistillationConfig(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] plus the fields of a distillation attack (Hinton et al. 2015,
    https://huggingface.co/papers/1503.02531), the attack that Yang et al. 2019
    (https://huggingface.co/papers/1906.06046) show removes trigger-set watermarks.

    The loss is `alpha · soft + (1 - alpha) · CE(student, labels)`. The soft term is
    `T² · KL(softmax(teacher / T) ‖ softmax(student / T))` on what the teacher exposes, or, with
    `teacher_output="label"`, the cross-entropy against the teacher's top-1 labels.

    Args:
        temperature (`float`, *optional*, defaults to `4.0`):
            Softmax temperature `T` of the soft term (Yang et al. attack at T = 4). Unused with
            `teacher_output="label"`.
        alpha (`float`, *optional*, defaults to `1.0`):
            Weight of the soft term, in `[0, 1]`. With 1.0 the student learns from the teacher alone and the
            attacker's data needs no labels (a `labels` column, if any, is ignored).
        teacher_output (`str`, *optional*, defaults to `"logits"`):
            What the attacker sees of the teacher: `"logits"`, `"probabilities"` (softmax at T = 1), `"top_k"` (the
            `top_k` largest probabilities, what a `pipeline` returns) or `"label"` (its top-1 label only, what a
            label-only API allows).
        top_k (`int`, *optional*, defaults to `5`):
            Number of scores the teacher exposes with `teacher_output="top_k"` (the `pipeline` default).
    """

    temperature: float = field(default=4.0, metadata={"help": "Softmax temperature T of the soft term (> 0)."})
    alpha: float = field(
        default=1.0, metadata={"help": "Weight of the soft term in [0, 1]; 1.0 needs no labels in the attacker's data."}
    )
    teacher_output: str = field(
        default="logits", metadata={"help": "What the teacher exposes.", "choices": list(TEACHER_OUTPUTS)}
    )
    top_k: int = field(default=5, metadata={"help": "Scores exposed with teacher_output='top_k'."})

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {self.temperature}; Yang et al. attack at 4.0.")
        if not 0 <= self.alpha <= 1:
            raise ValueError(
                f"`alpha` must be in [0, 1], got {self.alpha}. Use 1.0 to learn from the teacher alone (no labels)."
            )
        if self.teacher_output not in TEACHER_OUTPUTS:
            raise ValueError(f"`teacher_output` must be one of {TEACHER_OUTPUTS}, got {self.teacher_output!r}.")
        if self.teacher_output == "top_k" and not self.top_k >= 1:
            raise ValueError(f"`top_k` must be >= 1, got {self.top_k}; HF pipelines return 5.")
