"""What a suspect returns, as one kind of object: a `(queries, num_labels)` score matrix, `-inf` where unknown.

A suspect may be a model (logits), an API (probabilities, or its top-k scores), a `transformers` pipeline (lists of
`{"label", "score"}`) or an endpoint that returns labels only. [`as_score_matrix`] reads each into the same matrix,
[`score_kind`] tells what it exposes, and [`restrict_scores`] keeps what the caller declared the suspect exposes.
"""

import logging
import math
from collections.abc import Mapping

import torch

logger = logging.getLogger(__name__)

SCORE_KINDS = ("auto", "logits", "probabilities", "top_k", "labels")


def as_score_matrix(output, num_labels: int | None = None, label_to_index: dict | None = None) -> torch.Tensor:
    r"""
    Normalises what a suspect returns for a batch into a `(batch, num_labels)` float matrix, `-inf` where unknown.

    Accepted outputs: logits or probabilities `(batch, num_labels)` (NaN and `-inf` entries mark unknown scores), a
    model output with `logits`, a `(values, indices)` pair such as `torch.topk`'s result (top-k scores), a 1-d
    tensor of labels, or a pipeline's list of `{"label", "score"}` lists (mapped through `label_to_index`; unknown
    labels are skipped).
    """
    if isinstance(output, Mapping) and "logits" in output:
        output = output["logits"]
    if isinstance(output, list) and output and isinstance(output[0], (dict, list)):
        if label_to_index is None or num_labels is None:
            raise ValueError("Parsing `[{label, score}]` outputs needs `num_labels` and a label-to-index mapping.")
        rows = [output] if isinstance(output[0], dict) else output
        matrix = torch.full((len(rows), num_labels), -math.inf)
        unknown = set()
        for i, row in enumerate(rows):
            for item in row:
                index = label_to_index.get(str(item["label"]))
                if index is None or not 0 <= index < num_labels:
                    unknown.add(item["label"])
                elif math.isfinite(float(item["score"])):
                    matrix[i, index] = float(item["score"])
        if unknown:
            logger.warning("Skipped scores of labels the model's config does not know: %s", sorted(map(str, unknown)))
        return matrix
    if isinstance(output, tuple) and len(output) == 2:  # (values, indices), e.g. torch.topk
        values, indices = (torch.as_tensor(t) for t in output)
        if num_labels is None:
            raise ValueError("Top-k (values, indices) outputs need `num_labels`.")
        return torch.full((values.shape[0], num_labels), -math.inf).scatter(-1, indices.long(), values.float())
    scores = torch.as_tensor(output)
    if scores.ndim == 1:  # labels only
        if num_labels is None:
            raise ValueError("Label-only outputs need `num_labels`.")
        if scores.is_floating_point() and not torch.equal(scores, scores.round()):
            raise ValueError(
                "A 1-d output must hold class labels (integers); return a (batch, num_labels) matrix for scores."
            )
        matrix = torch.full((len(scores), num_labels), -math.inf)
        return matrix.scatter(-1, scores.long().unsqueeze(-1), 0.0)
    if scores.ndim != 2:
        raise ValueError(
            f"Expected scores of shape (batch, num_labels) or labels of shape (batch,), got {tuple(scores.shape)}."
        )
    scores = scores.detach().float().cpu()
    return torch.where(torch.isnan(scores), torch.full_like(scores, -math.inf), scores)


def score_kind(scores: torch.Tensor) -> str:
    """What a score matrix exposes: `"labels"`, `"top_k"`, `"probabilities"` or `"logits"`."""
    known = torch.isfinite(scores).sum(-1)
    if len(known) and int(known.min()) <= 1:
        return "labels"
    if int(known.min()) < scores.shape[-1]:
        return "top_k"
    if (scores >= 0).all() and torch.allclose(scores.sum(-1), torch.ones(len(scores)), atol=1e-3):
        return "probabilities"
    return "logits"


def keep_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keeps the `k` highest scores of each row; the others become `-inf` (unknown)."""
    values, indices = scores.topk(min(k, scores.shape[-1]), dim=-1)
    return torch.full_like(scores, -math.inf).scatter(-1, indices, values)


def restrict_scores(scores: torch.Tensor, kind: str, top_k: int | None) -> tuple[torch.Tensor, str]:
    """Applies what the caller declared the suspect exposes (`scores=`) and returns the matrix and its kind."""
    if kind not in SCORE_KINDS:
        raise ValueError(f"`scores` must be one of {SCORE_KINDS}, got {kind!r}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"`top_k` must be >= 1, got {top_k}.")
    if kind == "labels":
        return keep_top(scores, 1), "labels"
    if kind == "top_k" and top_k is None:
        raise ValueError("`scores='top_k'` needs `top_k=` (the number of scores the suspect returns).")
    if top_k is not None:
        scores = keep_top(scores, top_k)
    detected = score_kind(scores)
    if kind in ("logits", "probabilities") and detected in ("labels", "top_k"):
        raise ValueError(f"`scores={kind!r}` but the suspect returned only {detected}; use `scores='auto'`.")
    return scores, detected if kind == "auto" else kind
