r"""
Verification through labels alone: what a suspect's top-1 answers reveal of the class it ranks second.

The ingrain protocol compares the suspect's runner-up class with the key's choice, so it needs two scores per query.
A deployed endpoint often answers with a label only. Two routes recover a runner-up-like class from labels:

- **The degradation ladder** (`protocol="ingrain_labels"`). Each benign input `x` is sent clean, then degraded step by
  step (a rung of the ladder per query) until the suspect's label changes: the first label other than the clean answer
  `a(x)` is the class the suspect falls back to, compared with the key's choice `s(x)` (the ingrainer's best class
  other than `a(x)`), exactly as the runner-up is in the ingrain protocol. The default ladder occludes a growing
  central square with black. Additive noise, blur and blending towards grey are there to compare (`ladder=`); noise
  pushes every input towards the few classes noise looks like, and its first labels were measured to say little
  (`docs/label_only/label_only.py`; `docs/label_only/README.md`).
- **The error route** (`protocol="ingrain_errors"`; also part of `"ingrain_labels"` on labelled data). Where the
  suspect errs on labelled benign data, its wrong label is compared with the key's choice among the classes other
  than the true label. A model trained with the ingrain term, and a student that learned its labels, errs towards
  the key's choices (measured on the embedded sample: 0.40 for the ingrained model, 0.38 for its student, 0.30 for a
  hard-label student, against 0.12 for independent models), one query per input; but only the inputs it gets wrong
  count.

Every input costs what the suspect is sent: one query for the clean answer, one per rung tried. The budget
`max_queries` is never exceeded; inputs whose ladder never changes the label cost their queries and count nothing.

The statistics are the ingrain protocol's ([`hf_ingrain.verification.statistics`]): the agreements are compared with the null
rate's terms on the inputs compared (by top class: "the fallback class is a fixed class for each answer"; by label),
and with the suspect's agreements with the key's reference ingrainers (the key-draw test). Under the null hypothesis
the suspect does not depend on the key, and the ladder is fixed by the protocol before any suspect is seen, so the
class it reveals is as independent of the key as a runner-up is. When both routes are pooled, each comparison has its
own null rate; the binomial test uses their mean, which bounds the tail of the pooled count (a sum of independent
Bernoulli variables with different rates is more concentrated than the binomial at their mean rate: Hoeffding 1956).
"""

import torch

from ..data.image_ops import LADDERS, gaussian_blur  # noqa: F401 (LADDERS: the ladders of `degrade`, named here too)
from ..data.query_set import TensorQueries
from ..suspects import collect_scores
from .statistics import ingrain_null_rate, key_agreements

DEFAULT_RUNGS = 12


def degrade(pixels: torch.Tensor, ladder: str, level: float, low: torch.Tensor, high: torch.Tensor, noise=None):
    r"""
    `pixels` `(N, C, H, W)` degraded at `level` in (0, 1] (1: the strongest rung); `low` and `high` are each channel's
    black and white in the model's input space.

    - `"occlusion"`: a central square covering `level` of each side, filled with black.
    - `"noise"`: additive Gaussian noise of standard deviation `level` x the range; `noise` (standard normal, the
      shape of `pixels`) fixes its pattern, so that every rung of one input lies on one line towards one direction.
    - `"blur"`: a Gaussian blur of standard deviation `4 * level` pixels.
    - `"blend"`: `(1 - level) * x + level * grey`, grey the middle of the range.
    """
    _, channels, height, width = pixels.shape
    low, high = (v.view(1, channels, 1, 1).to(pixels) for v in (low, high))
    if ladder == "occlusion":
        out = pixels.clone()
        h, w = max(1, round(level * height)), max(1, round(level * width))
        top, left = (height - h) // 2, (width - w) // 2
        out[:, :, top : top + h, left : left + w] = low
        return out
    if ladder == "noise":
        noise = torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0)) if noise is None else noise
        return pixels + level * (high - low) * noise.to(pixels)
    if ladder == "blend":
        return (1 - level) * pixels + level * (low + high) / 2
    sigma = 4.0 * level
    return gaussian_blur(pixels, sigma, radius=max(1, int(round(3 * sigma))), padding_mode="replicate")


def channel_ranges(key) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel's black and white in the key's input space (after the model's preprocessing)."""
    ranges = (key.preprocessing or {}).get("channel_ranges")
    if not ranges:
        ranges = [list(key.value_range)] * key.input_shape[0]
    ranges = torch.tensor(ranges, dtype=torch.float32)
    return ranges[:, 0], ranges[:, 1]


def _labels(model, pixels: torch.Tensor, key, batch_size: int) -> torch.Tensor:
    columns = None if isinstance(model, torch.nn.Module) else [key.input_name]
    scores, _ = collect_scores(model, TensorQueries({key.input_name: pixels}), columns, batch_size,
                               num_labels=key.num_labels)
    return scores.argmax(-1)


def label_only_queries(
    model,
    key,
    dataset,
    routes: tuple[str, ...] = ("ladder", "errors"),
    ladder: str = "occlusion",
    num_rungs: int = DEFAULT_RUNGS,
    max_queries: int | None = None,
    batch_size: int = 256,
) -> dict:
    r"""
    The per-input comparisons of the label-only protocols (see the module docstring).

    Args:
        model: the suspect; only its top-1 label is read.
        key ([`WatermarkKey`]): an image key with a trained ingrainer.
        dataset (`TensorQueries` or `datasets.Dataset`): the benign queries (`pixel_values`, and `labels` for the
            error route), already read and deduplicated by [`~hf_ingrain.data.read_queries`].
        routes (`tuple[str, ...]`): `"ladder"` and/or `"errors"`.
        ladder (`str`): one of `LADDERS`.
        num_rungs (`int`): rungs of the ladder, levels `1/num_rungs, 2/num_rungs, ..., 1`.
        max_queries (`int`, *optional*): the most queries to send the suspect (default: no limit).
        batch_size (`int`): inputs per call.

    Returns:
        `dict`: `estimate` (the suspect's revealed class per compared input), `choice` (the key's), `route` (0 ladder,
        1 error), `reference_agreements`, `null_rate` and `null_rate_terms` (per route), `queries_sent`,
        `inputs_used`, `unanswered` (inputs whose ladder never changed the label).
    """
    columns = dataset.tensors if isinstance(dataset, TensorQueries) else dataset[:]  # read once
    pixels, labels = columns["pixel_values"], columns.get("labels")
    if "errors" in routes and "ladder" not in routes and labels is None:
        raise ValueError("The error route compares the suspect's wrong labels with the key: the queries need labels.")
    low, high = channel_ranges(key)
    levels = [(rung + 1) / num_rungs for rung in range(num_rungs)]
    budget = max_queries if max_queries is not None else float("inf")
    sent, used = 0, 0
    index, estimate, route, excluded = [], [], [], []
    unanswered = 0
    cost = 1 + (num_rungs if "ladder" in routes else 0)  # the most one input can cost
    while used < len(pixels) and sent < budget:
        size = int(min(batch_size, len(pixels) - used, (budget - sent) // cost if budget != float("inf") else batch_size))
        if size < 1:
            break
        batch = pixels[used : used + size].float()
        clean = _labels(model, batch, key, batch_size)
        sent += size
        wrong = torch.zeros(size, dtype=torch.bool)
        if labels is not None and "errors" in routes:
            truth = torch.as_tensor(labels[used : used + size])
            wrong = clean != truth
            for i in wrong.nonzero().flatten().tolist():
                index.append(used + i), estimate.append(int(clean[i])), route.append(1), excluded.append(int(truth[i]))
        if "ladder" in routes:
            found = torch.full((size,), -1)
            pending = (~wrong).nonzero().flatten()
            direction = torch.randn(batch.shape, generator=torch.Generator().manual_seed(used))  # for "noise"
            for rung, level in enumerate(levels):
                if len(pending) == 0:
                    break
                answers = _labels(model, degrade(batch[pending], ladder, level, low, high, direction[pending]), key, batch_size)
                sent += len(pending)
                changed = answers != clean[pending]
                found[pending[changed]] = answers[changed]
                pending = pending[~changed]
            unanswered += len(pending)
            for i in (found >= 0).nonzero().flatten().tolist():
                index.append(used + i), estimate.append(int(found[i])), route.append(0), excluded.append(int(clean[i]))
        used += size
    index, estimate, route, excluded = (torch.tensor(v, dtype=torch.long) for v in (index, estimate, route, excluded))
    if len(index):
        choice, reference_agreements, null_rate, terms = _compare_with_key(
            key, pixels[index].float(), estimate, excluded, route,
            None if labels is None else torch.as_tensor(labels)[index], batch_size,
        )
    else:  # nothing compared (no error and no changed label within the budget): no evidence
        choice, reference_agreements, null_rate, terms = excluded, [], 1.0, {}
    return {
        "estimate": estimate, "choice": choice, "route": route, "reference_agreements": reference_agreements,
        "null_rate": null_rate, "null_rate_terms": terms, "queries_sent": int(sent), "inputs_used": int(used),
        "unanswered": int(unanswered),
    }


def _compare_with_key(key, pixels, estimate, excluded, route, labels, batch_size):
    """The key's choices on the compared inputs, the suspect's agreement with each reference ingrainer's, and the
    null rate (per route, then pooled over the inputs)."""
    ingrainer_scores, reference_scores = key.ingrainer_scores(TensorQueries({"pixel_values": pixels}), batch_size)
    choice, reference_agreements = key_agreements(estimate, excluded, ingrainer_scores, reference_scores)
    null_rates, terms = [], {}
    for code, name in ((0, "ladder"), (1, "errors")):
        mask = route == code
        if mask.any():
            rate, route_terms = ingrain_null_rate(ingrainer_scores[mask], excluded[mask],
                                                  None if labels is None else labels[mask])
            terms[name] = {**route_terms, "null_rate": rate, "num_compared": int(mask.sum())}
            null_rates.append(rate * int(mask.sum()))
    return choice, reference_agreements, sum(null_rates) / len(pixels), terms


def hardest_first(queries, model, batch_size: int = 512):
    r"""
    The queries sorted by the probability `model` gives each one's true label, lowest first (ties keep their order):
    the order in which to commit them (`key.commit_queries(hardest_first(queries, model))`) before a label-only
    verification with a budget.

    A label-only test learns about the key only where the suspect's label moves off the true class: on the images it
    gets wrong (`protocol="ingrain_errors"`) or that little occlusion flips (`"ingrain_labels"`). Sent in their
    natural order, most queries of a budget are images every model gets right, and say nothing. Sorted hardest
    first, a budget meets more of the images where students of the owner's model err. On full MNIST (three keys,
    `docs/label_only/`) the error route then verified the students at T = 1 and 4 of every key with 1,000
    queries (before: 10,000 and 5,000) and the hard-label students with 5,000 (before: 10,000), with none of 36
    independent (model, key) pairs verifying (`docs/label_only/README.md`).

    The p-value stays valid because the order is fixed before any suspect is seen: `model` must be a plain classifier
    of the owner's (trained on the owner's data without the key, so it knows nothing of any suspect), and the
    ordered digest that `commit_queries` records fixes the order. An order chosen after a suspect's answers (its own
    errors first) is what [`is_committed`] refuses for a budgeted test.

    Args:
        queries (`datasets.Dataset` or [`TensorQueries`]): benign queries with their `labels`.
        model (`nn.Module`, `str` or callable): the order model, anything [`~hf_ingrain.suspects.collect_scores`]
            reads; it must expose every class's score (logits).
        batch_size (`int`, *optional*, defaults to 512): queries per forward pass.

    Returns:
        The same queries, reordered (`queries.select(order)`).
    """
    if "labels" not in queries.column_names:
        raise ValueError(
            "hardest_first orders queries by the probability of their true label, and these have no `labels` column: "
            "pass the labelled benign data (the test split, as the model receives it)."
        )
    scores, labels = collect_scores(model, queries, batch_size=batch_size)
    if not torch.isfinite(scores).all():
        raise ValueError(
            "The order model exposes only some of its scores (a top-k or label-only model): hardest_first needs every "
            "class's score; pass the owner's own classifier."
        )
    confidence = scores.softmax(-1).gather(1, labels[:, None]).squeeze(1)
    return queries.select(torch.argsort(confidence, stable=True).tolist())
