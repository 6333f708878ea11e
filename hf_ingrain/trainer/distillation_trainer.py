"""[`DistillationTrainer`]: the distillation attack, a `Trainer` that trains a student from a teacher's outputs."""

import logging
import os

import torch
from torch import nn
from transformers import Trainer

from ..data import first_example
from ..losses import distillation_kl, hard_label_cross_entropy, scores_to_log_probs
from ..suspects import forward_logits, load_model, model_input_names, model_inputs
from .distillation_config import DistillationConfig
from .mixins import AuxiliaryLossMixin, LoggedMetricsMixin, check_config

logger = logging.getLogger(__name__)


def _num_labels(model, example) -> int | None:
    """`config.num_labels`, or the width of the model's output on one example when it has no config."""
    num_labels = getattr(getattr(model, "config", None), "num_labels", None)
    if num_labels is None and example is not None:
        batch = {k: torch.as_tensor(v).unsqueeze(0) for k, v in example.items() if k != "labels"}
        num_labels = forward_logits(model, batch).shape[-1]
    return num_labels


class DistillationTrainer(AuxiliaryLossMixin, LoggedMetricsMixin, Trainer):
    r"""
    The distillation attack: a [`~transformers.Trainer`] that trains a student from a frozen teacher's outputs on the
    attacker's own data (Hinton et al. 2015, https://huggingface.co/papers/1503.02531; as an attack on watermarks,
    Yang, Dang and Chang 2019, https://huggingface.co/papers/1906.06046).

    Threat model: the attacker can query the teacher (the watermarked model) on inputs of their choice and sees what
    `teacher_output` says (logits, rounded probabilities, the top-k scores of a `pipeline`, or only the top-1 label);
    they have unlabelled data of the task (labels are used only when `teacher_weight < 1`), and train a student of any
    architecture with the same labels. Trigger-set watermarks live on inputs the attacker never queries, so the
    student does not learn them; an ingrained watermark lives in the predictions on ordinary inputs, so it does.

    The teacher is frozen, kept in eval mode, prepared with `evaluation_mode=True` (never wrapped for gradient sync)
    and never saved: checkpoints and `save_model` hold the student alone. Logged metrics: `distill/kl` (or
    `distill/label_ce` with `teacher_output="label"`), `distill/agreement` (top-1 agreement of student and teacher on
    the batch) and, when `teacher_weight < 1`, `task/loss`. Both terms are normalised exactly like a `Trainer`'s task
    loss (gradient accumulation, several processes).

    Args:
        model (`PreTrainedModel` or `nn.Module`):
            The student. It may be another, smaller architecture than the teacher, with the same number of labels.
        teacher (`PreTrainedModel`, `nn.Module` or `str`):
            The attacked model, or a local folder or Hub id to load it from with
            [`~hf_ingrain.suspects.load_model`] (safetensors weights only, no remote code, one commit).
        args ([`DistillationConfig`]):
            Training arguments with the distillation fields.
        **kwargs:
            Everything else `Trainer` takes (`train_dataset`, `eval_dataset`, `data_collator`, `callbacks`, ...).

    Example:

    ```python
    >>> from hf_ingrain import DistillationConfig, DistillationTrainer
    >>> args = DistillationConfig(output_dir="student", temperature=4.0, teacher_weight=1.0, teacher_output="logits")
    >>> trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=splits["attacker"])
    >>> trainer.train()
    ```
    """

    _tag_names = ["hf_ingrain", "distillation", "watermark-removal-attack"]

    def __init__(self, model=None, teacher=None, args: DistillationConfig | None = None, **kwargs):
        check_config(args, DistillationConfig, "`temperature`, `teacher_weight` and `teacher_output`")
        if model is None:
            raise ValueError("Pass the student to train as `model=`.")
        if isinstance(teacher, (str, os.PathLike)):
            teacher = load_model(teacher)
        if not isinstance(teacher, nn.Module):
            raise ValueError(
                f"`teacher` must be a model, a local folder or a Hub id, got {type(teacher).__name__}."
            )
        self._check_compatible(model, teacher, args, kwargs.get("train_dataset"))
        super().__init__(model=model, args=args, **kwargs)
        if hasattr(self.model, "add_model_tags"):  # the Trainer's model card then says what made this student
            self.model.add_model_tags(self._tag_names)
        teacher.eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        self.teacher = self.accelerator.prepare_model(teacher, evaluation_mode=True)  # not secret: may be prepared
        self._teacher_inputs = model_input_names(teacher)
        self._student_inputs = model_input_names(model)
        self._init_metrics()

    # ------------------------------------------------------------------------------------------- validation
    @staticmethod
    def _check_compatible(student, teacher, args, train_dataset):
        example = first_example(train_dataset)
        if example is not None:
            main_input = getattr(teacher, "main_input_name", None)
            if main_input is not None and main_input not in example:
                raise ValueError(
                    f"The teacher reads `{main_input}` but the training examples have {sorted(example)}: give the "
                    "attacker's data the teacher's input column."
                )
            if args.teacher_weight < 1 and "labels" not in example:
                raise ValueError(
                    f"`teacher_weight={args.teacher_weight}` weighs in a task loss on labels, but the training data has "
                    "no `labels` column. Set `teacher_weight=1.0` to learn from the teacher alone, or add labels."
                )
        student_labels, teacher_labels = _num_labels(student, example), _num_labels(teacher, example)
        if student_labels is not None and teacher_labels is not None and student_labels != teacher_labels:
            raise ValueError(
                f"The student predicts {student_labels} labels but the teacher predicts {teacher_labels}. Build the "
                f"student with `num_labels={teacher_labels}`."
            )
        if args.teacher_output == "top_k" and teacher_labels is not None and args.top_k > teacher_labels:
            raise ValueError(f"`top_k={args.top_k}` exceeds the teacher's {teacher_labels} labels; lower `top_k`.")

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        # Keep the columns the teacher reads, even those the student does not.
        self._signature_columns += [n for n in self._teacher_inputs or [] if n not in self._signature_columns]

    # ------------------------------------------------------------------------------------------- loss
    @torch.no_grad()
    def query_teacher(self, inputs: dict) -> torch.Tensor:
        """What the attacker sees of the teacher on a batch, as distillation targets: log-probabilities over all
        labels, or in `"label"` mode only the top-1 labels (no scores leave this method)."""
        scores = forward_logits(self.teacher, inputs, self._teacher_inputs)
        if self.args.teacher_output == "label":
            return scores.argmax(-1)
        return scores_to_log_probs(
            scores, self.args.teacher_output, self.args.top_k, self.args.probability_decimals
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args = self.args
        outputs = model(**model_inputs(model, inputs, self._student_inputs))
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        targets = self.query_teacher(inputs)
        if args.teacher_output == "label":
            soft_name, teacher_top = "distill/label_ce", targets
            soft = hard_label_cross_entropy(logits, targets, reduction="none")
        else:
            soft_name, teacher_top = "distill/kl", targets.argmax(-1)
            soft = distillation_kl(logits, targets, args.temperature, reduction="none")
        per_example = {soft_name: soft}
        loss = args.teacher_weight * self._reduce_per_example(soft, num_items_in_batch, model.training)
        if args.teacher_weight < 1:
            task = hard_label_cross_entropy(logits, inputs["labels"], reduction="none")
            loss = loss + (1 - args.teacher_weight) * self._reduce_per_example(task, num_items_in_batch, model.training)
            per_example["task/loss"] = task
        per_example["distill/agreement"] = (logits.argmax(-1) == teacher_top).float()

        for name, values in per_example.items():
            self._record_metric(model, name, values)
        return (loss, outputs) if return_outputs else loss
