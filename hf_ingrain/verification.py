r"""
Verification: does a suspect model carry the owner's watermark?

## The ingrain protocol
On benign inputs `x` (ordinary data of the task, not the carriers), take the suspect model's top class `a(x)` and its
runner-up `r(x)` (its best class other than `a(x)`), and the ingrainer's choice `s(x)`: the ingrainer's best class
other than `a(x)`. A model trained with [`IngrainTrainer`], or distilled from one, ranks classes like the ingrainer,
so `r(x) = s(x)` on many inputs. The statistic is the number of agreements `k` among `n` queries.

## The null rate and why it holds
A model not derived from the key cannot know `s`, but it can still agree with it by accident, and it does so
above `1 / (K - 1)` whenever the ingrainer's choices are uneven: if the ingrainer puts 40% of benign images on one
class, a model whose runner-up is always that class agrees on 40% of them. More generally any model whose runner-up
is a function of a coarse property of the input (its top class, or its true class: "a 4 is most like a 9") agrees
with `s` at most as often as the best such function does. The null rate is that maximum, computed from the key's
ingrainer and the data alone:

    null_rate = max( 1 / (K - 1),
                     Σ_a P̂(a) · max_c P̂(s = c | a),        a = the suspect's top class
                     Σ_y P̂(y) · max_c P̂(s_y = c | y) )      y = the true label, when the data has labels

Each term is exactly the agreement of the best runner-up rule that depends only on that property, measured on the
same queries, so it covers the degenerate models (constant runner-up) and those whose errors follow the same
class-level similarities as the ingrainer. What it cannot cover is a model whose runner-up happens to track the
ingrainer's choices *within* a class. That is why [`WatermarkKey.train_ingrainer`] spreads the ingrainer's choices
within each class by a secret random partition that no independent model has reason to follow; the false positive
rate of the whole test is measured on independently trained models by [`calibrate_null`] and in the tests.

The p-value is the one-sided binomial tail `P[Binomial(n, null_rate) >= k]`. `alpha` is the largest false-positive
probability the owner accepts: a model is `verified` when `p_value <= alpha`. The default 1e-6 is deliberately far
below the usual 0.05, because a claim of ownership is made once and must stand against anyone who trains many
models. Queries are treated as independent given the model; the measured null agreements of independent models
(see [`calibrate_null`]) are the check on that assumption.

## The carriers protocol
The classic trigger-set test: the suspect's accuracy on the key's carriers against chance `1 / K`. It works with
labels only; distillation on benign data usually erases it, which is the point of ingrain.
"""

import logging
import math
from dataclasses import asdict, dataclass, field

import torch
from scipy.stats import binom

from .losses import runner_up

logger = logging.getLogger(__name__)

PROTOCOLS = ("ingrain", "carriers")
DEFAULT_ALPHA = 1e-6


@dataclass
class VerificationResult:
    r"""
    The outcome of [`verify`].

    Args:
        verified (`bool`): `p_value <= alpha`.
        p_value (`float`): one-sided binomial p-value of the agreement count under the null rate.
        agreement (`float`): share of queries on which the suspect agrees with the key.
        null_rate (`float`): the agreement bound for models not derived from the key.
        num_queries (`int`): number of queries used.
        num_agreements (`int`): number of agreeing queries.
        alpha (`float`): the significance level.
        protocol (`str`): `"ingrain"` or `"carriers"`.
        details (`dict`): protocol-specific extras (the terms of the null rate, accuracy on labelled data, ...).
    """

    verified: bool
    p_value: float
    agreement: float
    null_rate: float
    num_queries: int
    num_agreements: int
    alpha: float
    protocol: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        verdict = "VERIFIED" if self.verified else "not verified"
        return (
            f"{verdict} ({self.protocol}): agreement {self.agreement:.3f} on {self.num_queries} queries "
            f"vs null rate {self.null_rate:.3f}, p = {self.p_value:.3g} (alpha = {self.alpha:g})"
        )


def binomial_p_value(num_agreements: int, num_queries: int, null_rate: float) -> float:
    """One-sided `P[Binomial(num_queries, null_rate) >= num_agreements]`."""
    if num_queries == 0:
        return 1.0
    return float(binom.sf(num_agreements - 1, num_queries, min(max(null_rate, 0.0), 1.0)))


def _best_rule_agreement(choices: torch.Tensor, groups: torch.Tensor) -> float:
    """Agreement of the best rule mapping each group to one constant class, with `choices`."""
    best = 0
    for group in groups.unique():
        best += int(torch.bincount(choices[groups == group]).max())
    return best / max(len(choices), 1)


def ingrain_null_rate(ingrainer_logits: torch.Tensor, model_top: torch.Tensor, labels: torch.Tensor | None = None):
    r"""
    The agreement bound for models not derived from the key (see the module docstring).

    Args:
        ingrainer_logits (`torch.Tensor` of shape `(n, K)`): the ingrainer's logits on the queries.
        model_top (`torch.Tensor` of shape `(n,)`): the suspect's top class on each query.
        labels (`torch.Tensor` of shape `(n,)`, *optional*): true labels of the queries.

    Returns:
        `tuple[float, dict]`: the null rate and its terms.
    """
    num_labels = ingrainer_logits.shape[-1]
    terms = {"uniform": 1.0 / (num_labels - 1)}
    terms["by_top_class"] = _best_rule_agreement(runner_up(ingrainer_logits, model_top), model_top)
    if labels is not None:
        terms["by_label"] = _best_rule_agreement(runner_up(ingrainer_logits, labels), labels)
    return max(terms.values()), terms


def _load_model(path_or_id: str, revision: str | None = None):
    """Loads a classifier from a local folder with safetensors weights, never executing repository code."""
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(path_or_id, revision=revision, trust_remote_code=False)
    architectures = " ".join(getattr(config, "architectures", None) or [])
    auto = AutoModelForSequenceClassification if "SequenceClassification" in architectures else AutoModelForImageClassification
    model = auto.from_pretrained(path_or_id, revision=revision, use_safetensors=True, trust_remote_code=False)
    return model.eval()


@torch.no_grad()
def collect_scores(model, dataset, input_names=None, batch_size: int = 256, show_progress: bool = False):
    r"""
    Runs `model` over `dataset` and returns its scores and the labels (if any).

    Args:
        model (`nn.Module`, `str` or callable):
            A model, a local folder with safetensors weights, or a callable mapping a dict batch to a
            `(batch, num_labels)` score tensor.
        dataset: examples with the model's inputs (and optionally `labels`).
        input_names (`list[str]`, *optional*): input keys to pass (default: those the model's forward accepts).

    Returns:
        `tuple[torch.Tensor, torch.Tensor | None]`: scores of shape `(n, num_labels)` and labels.
    """
    from tqdm.auto import tqdm

    from .data import iterate_batches
    from .keys import forward_logits, model_input_names

    if isinstance(model, str):
        model = _load_model(model)
    if isinstance(model, torch.nn.Module):
        model.eval()
        names = input_names or model_input_names(model)
        device = next(model.parameters()).device

        def score(batch):
            return forward_logits(model, {k: v.to(device) for k, v in batch.items() if k in names}).float().cpu()

    elif callable(model):
        names, score = input_names, model
    else:
        raise ValueError(f"`model` must be a model, a path or a callable, got {type(model).__name__}.")
    columns = None if names is None else list(names) + ["labels"]
    scores, labels = [], []
    for batch in tqdm(iterate_batches(dataset, batch_size, columns), desc="Querying", disable=not show_progress):
        scores.append(torch.as_tensor(score(batch)).float())
        if "labels" in batch:
            labels.append(batch["labels"])
    if not scores:
        raise ValueError("The verification data set is empty.")
    return torch.cat(scores), (torch.cat(labels) if labels else None)


def verify(
    model,
    key,
    dataset=None,
    protocol: str = "ingrain",
    alpha: float = DEFAULT_ALPHA,
    batch_size: int = 256,
    show_progress: bool = False,
) -> VerificationResult:
    r"""
    Tests whether `model` carries the watermark of `key`.

    Args:
        model (`nn.Module`, `str` or callable):
            The suspect: a model, a local folder (safetensors weights only, no remote code), or a callable returning
            `(batch, num_labels)` scores for a dict batch.
        key ([`WatermarkKey`]):
            The owner's key.
        dataset (`datasets.Dataset`, *optional*):
            Benign queries (`pixel_values` or `input_ids`; `labels` optional). Required for `"ingrain"`.
        protocol (`str`, *optional*, defaults to `"ingrain"`):
            `"ingrain"` (runner-up agreement on benign data) or `"carriers"` (accuracy on the key's carriers).
        alpha (`float`, *optional*, defaults to 1e-6):
            Significance level: the largest false-positive probability accepted. `verified = p_value <= alpha`.
        batch_size (`int`, *optional*, defaults to 256):
            Queries per forward pass.
        show_progress (`bool`, *optional*, defaults to `False`):
            Show a progress bar while querying.

    Returns:
        [`VerificationResult`]

    Example:

    ```python
    >>> result = verify(model, key, splits["test"])
    >>> result.verified, result.p_value
    (True, 3.1e-45)
    ```
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
    if protocol == "carriers":
        return _verify_carriers(model, key, alpha, batch_size)
    if dataset is None:
        raise ValueError("The ingrain protocol needs benign queries: pass `dataset=` (e.g. your test split).")
    if key.ingrainer is None:
        raise ValueError("The key has no trained ingrainer: call `key.train_ingrainer(...)` first.")
    scores, labels = collect_scores(model, dataset, [key.input_name, "attention_mask"], batch_size, show_progress)
    if scores.shape[-1] != key.num_labels:
        raise ValueError(f"The model returns {scores.shape[-1]} scores per query but the key has {key.num_labels} labels.")
    ingrainer_scores, _ = collect_scores(key.ingrainer, dataset, [key.input_name, "attention_mask"], batch_size)
    top = scores.argmax(-1)
    agreements = runner_up(scores, top) == runner_up(ingrainer_scores, top)
    null_rate, terms = ingrain_null_rate(ingrainer_scores, top, labels)
    details = {"null_rate_terms": terms}
    if labels is not None:
        details["accuracy"] = (top == labels).float().mean().item()
    return _result(int(agreements.sum()), len(agreements), null_rate, alpha, "ingrain", details)


def _verify_carriers(model, key, alpha, batch_size):
    from datasets import Dataset

    carriers = Dataset.from_dict({key.input_name: key.carriers.numpy()}).with_format("torch")
    scores, _ = collect_scores(model, carriers, [key.input_name], batch_size)
    hits = scores.argmax(-1) == key.carrier_labels
    return _result(int(hits.sum()), len(hits), 1.0 / key.num_labels, alpha, "carriers", {})


def _result(num_agreements, num_queries, null_rate, alpha, protocol, details) -> VerificationResult:
    p_value = binomial_p_value(num_agreements, num_queries, null_rate)
    return VerificationResult(
        verified=p_value <= alpha,
        p_value=p_value,
        agreement=num_agreements / num_queries if num_queries else math.nan,
        null_rate=null_rate,
        num_queries=num_queries,
        num_agreements=num_agreements,
        alpha=alpha,
        protocol=protocol,
        details=details,
    )
