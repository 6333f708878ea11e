"""Loss functions of tensors, with no Trainer state.

Every function here takes logits of shape `(batch, num_labels)` and returns a scalar (or per-example values with
`reduction="none"`). All of them compute in float32, whatever the dtype of their inputs (mixed precision).
"""

import math

import torch
import torch.nn.functional as F


def _reduce(per_example: torch.Tensor, reduction: str, num_items_in_batch=None) -> torch.Tensor:
    if reduction == "none":
        return per_example
    if num_items_in_batch is not None:
        # Gradient accumulation: divide the sum by the number of examples in the whole accumulated batch, so the
        # micro-batch losses add up to the mean over it.
        return per_example.sum() / num_items_in_batch
    if reduction == "sum":
        return per_example.sum()
    if reduction == "mean":
        return per_example.mean()
    raise ValueError(f"`reduction` must be 'mean', 'sum' or 'none', got {reduction!r}.")


def distillation_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 4.0,
    reduction: str = "mean",
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    r"""
    Temperature-scaled distillation loss `T² · KL(softmax(teacher / T) ‖ softmax(student / T))` (Hinton et al. 2015).

    The `T²` factor keeps the gradient's magnitude independent of the temperature, so the weight of this term
    against a task loss means the same at every `T`. It is the ingrain loss of Yang et al. 2019
    (https://huggingface.co/papers/1906.06046) with the ingrainer as teacher, and the soft loss of a distillation
    attack.

    Args:
        student_logits (`torch.Tensor` of shape `(batch, num_labels)`):
            Logits of the model being trained.
        teacher_logits (`torch.Tensor` of shape `(batch, num_labels)`):
            Logits (or log-probabilities) of the frozen teacher on the same inputs.
        temperature (`float`, *optional*, defaults to 4.0):
            Softmax temperature `T > 0`.
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"` over the batch, `"sum"`, or `"none"` for per-example values.
        num_items_in_batch (`int` or `torch.Tensor`, *optional*):
            Number of examples in the whole accumulated batch; when given, the sum is divided by it.

    Returns:
        `torch.Tensor`: the loss.
    """
    if temperature <= 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature}.")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ "
            "in shape: both models must predict the same number of labels."
        )
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_example = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(-1)
    return _reduce(per_example * temperature**2, reduction, num_items_in_batch)


def hard_label_cross_entropy(
    student_logits: torch.Tensor,
    teacher_labels: torch.Tensor,
    reduction: str = "mean",
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy against the teacher's top-1 labels (hard-label extraction: no scores needed)."""
    per_example = F.cross_entropy(student_logits.float(), teacher_labels, reduction="none")
    return _reduce(per_example, reduction, num_items_in_batch)


def scores_to_log_probs(scores: torch.Tensor, kind: str, top_k: int | None = None) -> torch.Tensor:
    r"""
    Turns what a teacher exposes into log-probabilities over all labels, the targets of a distillation loss.

    Args:
        scores (`torch.Tensor` of shape `(batch, num_labels)`):
            The teacher's logits.
        kind (`str`):
            `"logits"` (full logits), `"probabilities"` (softmax at T = 1, what most APIs return), or `"top_k"`
            (only the `top_k` largest probabilities, what a `pipeline` returns; the remaining mass is spread evenly
            over the other labels).
        top_k (`int`, *optional*):
            Number of scores kept with `kind="top_k"`.
    """
    log_probs = F.log_softmax(scores.float(), dim=-1)
    if kind in ("logits", "probabilities"):
        return log_probs
    if kind == "top_k":
        num_labels = scores.shape[-1]
        if top_k is None or not 1 <= top_k <= num_labels:
            raise ValueError(f"`top_k` must be between 1 and {num_labels}, got {top_k}.")
        if top_k == num_labels:
            return log_probs
        probs = log_probs.exp()
        top_values, top_indices = probs.topk(top_k, dim=-1)
        rest = (1.0 - top_values.sum(-1, keepdim=True)).clamp(min=1e-8) / (num_labels - top_k)
        kept = rest.expand_as(probs).clone().scatter(-1, top_indices, top_values)
        return kept.clamp(min=1e-12).log()
    raise ValueError(f"`kind` must be 'logits', 'probabilities' or 'top_k', got {kind!r}.")


def runner_up(logits: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """The highest-scoring label other than `exclude` (default: the top-1 label), per row."""
    if exclude is None:
        exclude = logits.argmax(-1)
    masked = logits.float().scatter(-1, exclude.unsqueeze(-1), -math.inf)
    return masked.argmax(-1)
