"""Training arguments of [`DistillationTrainer`]."""

import warnings
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .mixins import ExtendsTrainingArguments

TEACHER_OUTPUTS = ("logits", "probabilities", "top_k", "label")


@dataclass
class DistillationConfig(ExtendsTrainingArguments, TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] plus the fields of a distillation attack (Hinton et al. 2015,
    https://huggingface.co/papers/1503.02531), the attack that Yang et al. 2019
    (https://huggingface.co/papers/1906.06046) show removes trigger-set watermarks.

    The loss is `teacher_weight · soft + (1 - teacher_weight) · CE(student, labels)`. The soft term is
    `T² · KL(softmax(teacher / T) ‖ softmax(student / T))` on what the teacher exposes, or, with
    `teacher_output="label"`, the cross-entropy against the teacher's top-1 labels.

    Args:
        temperature (`float`, *optional*, defaults to `4.0`):
            Softmax temperature `T` of the soft term (Yang et al. attack at T = 4). Unused with
            `teacher_output="label"`.
        teacher_weight (`float`, *optional*, defaults to `1.0`):
            Weight of the soft term, in `[0, 1]`. With 1.0 the student learns from the teacher alone and the
            attacker's data needs no labels (a `labels` column, if any, is ignored).
        teacher_output (`str`, *optional*, defaults to `"logits"`):
            What the attacker sees of the teacher: `"logits"`, `"probabilities"` (the softmax at T = 1 rounded to
            `probability_decimals` decimals, as an API returns it), `"top_k"` (the `top_k` largest probabilities,
            what a `pipeline` returns) or `"label"` (its top-1 label only, what a label-only API allows).
        top_k (`int`, *optional*, defaults to `5`):
            Number of scores the teacher exposes with `teacher_output="top_k"` (the `pipeline` default).
        probability_decimals (`int`, *optional*, defaults to `4`):
            Decimals of the probabilities the teacher returns with `teacher_output="probabilities"`.
        alpha (`float`, *optional*):
            Deprecated name of `teacher_weight` (it clashed with the significance level `alpha` of [`verify`]);
            removed in the next release.
    """

    temperature: float = field(default=4.0, metadata={"help": "Softmax temperature T of the soft term (> 0)."})
    teacher_weight: float = field(
        default=1.0, metadata={"help": "Weight of the soft term in [0, 1]; 1.0 needs no labels in the attacker's data."}
    )
    teacher_output: str = field(
        default="logits", metadata={"help": "What the teacher exposes.", "choices": list(TEACHER_OUTPUTS)}
    )
    top_k: int = field(default=5, metadata={"help": "Scores exposed with teacher_output='top_k'."})
    probability_decimals: int = field(
        default=4, metadata={"help": "Decimals of the probabilities exposed with teacher_output='probabilities'."}
    )
    alpha: float | None = field(
        default=None, metadata={"help": "Deprecated: use --teacher_weight (removed in the next release)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.alpha is not None:
            warnings.warn(
                "`DistillationConfig(alpha=...)` is deprecated and will be removed in the next release: use "
                "`teacher_weight=` (`alpha` is the significance level of `verify`).",
                FutureWarning,
                stacklevel=3,
            )
            if self.teacher_weight != 1.0 and self.teacher_weight != self.alpha:
                raise ValueError(
                    f"Both `alpha={self.alpha}` and `teacher_weight={self.teacher_weight}` are set; set `teacher_weight` "
                    "only."
                )
            self.teacher_weight, self.alpha = self.alpha, None
        if not self.temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {self.temperature}; Yang et al. attack at 4.0.")
        if not 0 <= self.teacher_weight <= 1:
            raise ValueError(
                f"`teacher_weight` must be in [0, 1], got {self.teacher_weight}. Use 1.0 to learn from the teacher "
                "alone (no labels)."
            )
        if self.teacher_output not in TEACHER_OUTPUTS:
            raise ValueError(f"`teacher_output` must be one of {TEACHER_OUTPUTS}, got {self.teacher_output!r}.")
        if self.teacher_output == "top_k" and not self.top_k >= 1:
            raise ValueError(f"`top_k` must be >= 1, got {self.top_k}; HF pipelines return 5.")
        if not 1 <= self.probability_decimals <= 12:
            raise ValueError(
                f"`probability_decimals` must be between 1 and 12, got {self.probability_decimals}; APIs commonly "
                "return 4."
            )
