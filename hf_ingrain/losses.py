"""Loss functions of tensors, with no Trainer state.

Every function here takes logits of shape `(batch, num_labels)` and returns a scalar (or per-example values with
`reduction="none"`). All of them compute in float32, whatever the dtype of their inputs (mixed precision).
"""

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


def scores_to_log_probs(
    scores: torch.Tensor, kind: str, top_k: int | None = None, probability_decimals: int = 4
) -> torch.Tensor:
    r"""
    Turns what a teacher exposes into log-probabilities over all labels, the targets of a distillation loss.

    Args:
        scores (`torch.Tensor` of shape `(batch, num_labels)`):
            The teacher's logits.
        kind (`str`):
            `"logits"` (full logits), `"probabilities"` (the softmax at T = 1 rounded to `probability_decimals`
            decimals, what an API returns: a probability rounded to 0 is taken as a quarter of the rounding step, the
            middle of what the attacker knows, `[0, step / 2)`, and the row is renormalised), or `"top_k"` (only the
            `top_k` largest probabilities, what a `pipeline` returns; the remaining mass is spread evenly over the
            other labels).
        top_k (`int`, *optional*):
            Number of scores kept with `kind="top_k"`.
        probability_decimals (`int`, *optional*, defaults to 4):
            Decimals of the probabilities with `kind="probabilities"`.
    """
    log_probs = F.log_softmax(scores.float(), dim=-1)
    if kind == "logits":
        return log_probs
    if kind == "probabilities":
        step = 10.0**-probability_decimals
        probs = torch.round(log_probs.exp(), decimals=probability_decimals).clamp(min=step / 4)
        return (probs / probs.sum(-1, keepdim=True)).log()
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


def ingrainer_spread_loss(
    logits: torch.Tensor, labels: torch.Tensor | None, num_labels: int, sharpness_weight: float = 0.3
) -> torch.Tensor:
    r"""
    The ingrainer's objective on benign data: spread its choices evenly, and make each one confident.

    The first term is the negative class-conditional entropy of the ingrainer's choices, the true class excluded:
    for every class `y`, the mean over inputs of class `y` of its softmax with `y` masked is pushed towards uniform
    over the other `K - 1` classes (with `labels=None`, one group of all inputs and nothing masked). The second is
    `sharpness_weight` times the mean per-input entropy, which makes each single choice confident. An ingrainer
    trained on noise carriers alone tends to send most benign inputs to one or two classes, which a model not derived
    from the key can then match by accident; see [`~hf_ingrain.WatermarkKey.train_ingrainer`].

    Args:
        logits (`torch.Tensor` of shape `(batch, num_labels)`): the ingrainer's logits on benign inputs.
        labels (`torch.Tensor` of shape `(batch,)`, *optional*): their true labels.
        num_labels (`int`): number of classes `K`.
        sharpness_weight (`float`, *optional*, defaults to 0.3): weight of the per-input entropy.

    Returns:
        `torch.Tensor`: the scalar loss (lower is better spread and sharper).
    """
    logits = logits.float()
    if labels is not None:
        logits = logits.masked_fill(F.one_hot(labels, num_labels).bool(), -1e4)
    probs = F.softmax(logits, dim=-1)
    per_input_entropy = -(probs * torch.log(probs + 1e-8)).sum(-1).mean()
    groups = [labels == c for c in range(num_labels)] if labels is not None else [torch.ones_like(probs[:, 0]).bool()]
    negative_marginal_entropy = probs.new_zeros(())
    for group in groups:
        if group.any():
            marginal = probs[group].mean(0)
            share = group.float().mean()
            negative_marginal_entropy = negative_marginal_entropy + (marginal * torch.log(marginal + 1e-8)).sum() * share
    return negative_marginal_entropy + sharpness_weight * per_input_entropy


def embedding_vector(weight: torch.Tensor) -> torch.Tensor:
    """The vector a Uchida signature lives in: the mean of `weight` over its first (filter) dimension, flattened
    (Uchida et al. 2017, https://huggingface.co/papers/1701.04082)."""
    return weight.float().mean(0).flatten()


def signature_loss(weight: torch.Tensor, projection: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Uchida's embedding regulariser `Σ_i BCE(sigmoid(X_i · w), b_i)` (summed over bits, as in the paper), with
    `w = embedding_vector(weight)`, `X` the secret projection and `b` the signature bits."""
    logits = projection.to(weight.device, torch.float32) @ embedding_vector(weight)
    return F.binary_cross_entropy_with_logits(logits, bits.to(weight.device, torch.float32), reduction="sum")


def ingrainer_spread_loss_per_member(
    logits: torch.Tensor, labels: torch.Tensor | None, num_labels: int, sharpness_weight: float = 0.3
) -> torch.Tensor:
    r"""
    [`ingrainer_spread_loss`] of several ingrainers at once, each on its own inputs: the same value for each (up to
    float rounding: the class groups are summed with a one-hot product instead of one at a time), without a loop or a
    data-dependent shape, for a batched model.

    Args:
        logits (`torch.Tensor` of shape `(members, batch, num_labels)`): each ingrainer's logits on its benign inputs.
        labels (`torch.Tensor` of shape `(members, batch)`, *optional*): their true labels.
        num_labels (`int`): number of classes `K`.
        sharpness_weight (`float`, *optional*, defaults to 0.3): weight of the per-input entropy.

    Returns:
        `torch.Tensor` of shape `(members,)`: each ingrainer's loss.
    """
    logits = logits.float()
    if labels is not None:
        groups = F.one_hot(labels, num_labels).to(logits.dtype)  # (M, N, K): the inputs of each class
        logits = logits.masked_fill(groups.bool(), -1e4)
    else:
        groups = torch.ones_like(logits[..., :1])  # one group of all inputs
    probs = F.softmax(logits, dim=-1)
    per_input_entropy = -(probs * torch.log(probs + 1e-8)).sum(-1).mean(-1)
    counts = groups.sum(1)  # (M, G)
    marginals = torch.einsum("mng,mnk->mgk", groups, probs) / counts.clamp(min=1).unsqueeze(-1)
    shares = counts / logits.shape[1]  # an empty group has share 0 and a zero marginal: it adds nothing
    negative_marginal_entropy = ((marginals * torch.log(marginals + 1e-8)).sum(-1) * shares).sum(-1)
    return negative_marginal_entropy + sharpness_weight * per_input_entropy
