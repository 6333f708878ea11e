r"""
A free fingerprint: points near the victim's decision boundary, after IPGuard (Cao, Jia and Gong, "IPGuard:
Protecting Intellectual Property of Deep Neural Networks via Fingerprinting the Classification Boundary", AsiaCCS 2021,
https://arxiv.org/abs/1910.12903). Our implementation, with the key-draw test of this package.

## How the queries are made
From an image `x` of the task that the victim labels `i`, pick another label `j` at random and move `x` (Adam on the
pixels, the victim frozen) until the victim's logit of `j` exceeds that of `i` by a margin `k` while `i` stays above
every other label: the paper's loss `ReLU(Z_i - Z_j + k) + ReLU(max_{t != i, j} Z_t - Z_i)`, minimised until it is 0
or for at most `steps` steps (1,000 in the paper). The query is the point reached, and its answer the victim's label
there. A small `k` puts the point just across the boundary between `i` and `j`; a larger one further in.

## The test
The statistic is the suspect's matching rate, the share of queries on which it returns the victim's label (labels
only). Models made without the victim match it on many boundary points too (on the side of the boundary that the
task decides), so, as for the other fingerprints of this package, the matching rate is compared with those of
reference models the owner trained by the victim's recipe with other seeds: the key-draw test
([`~hf_ingrain.verification.key_draw_p_value`]). IPGuard itself sets a threshold on the matching rate from models it
calls independent; the references play that part here and give the threshold a p-value.

Honest caveats:
- The points are made against the victim's weights: whatever moves its boundary (fine-tuning, pruning, distillation
  into another architecture) moves the answers, and the paper's own results show the matching rate of fine-tuned and
  retrained copies falling toward that of independent models. Measured in `tests/test_fingerprints.py`.
- The queries are off the data's distribution (they are optimised inputs): a suspect's owner can see them coming and
  answer them otherwise. Keep the fingerprint private until a verification.
- Images only: the optimisation moves pixels. For a text model, [`~hf_ingrain.fingerprints.VictimErrorFingerprint`].
"""

import logging

import torch

from ..suspects.querying import evaluating, model_logits
from ..verification import DEFAULT_ALPHA
from .base import (
    FingerprintResult,
    LabelFingerprint,
    check_references,
    key_draw_result,
    pixel_outputs,
    pixel_range,
    read_fingerprint,
    save_fingerprint,
    seed_images,
    warn_derived_references,
)

logger = logging.getLogger(__name__)

SCHEME = "boundary"
SCHEMA_VERSION = 1
PAPER = "https://arxiv.org/abs/1910.12903"
TENSOR_NAMES = ("queries", "victim_labels", "reference_labels")
MIN_QUERIES = 20


def boundary_loss(logits: torch.Tensor, source: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    r"""
    IPGuard's loss on each row of `logits` (`(batch, num_labels)`): `ReLU(Z_i - Z_j + k) + ReLU(max_{t != i, j} Z_t -
    Z_i)` with `i = source`, `j = target` and `k = margin`; 0 once label `j` leads `i` by `k` and `i` leads the rest.
    """
    rows = torch.arange(len(logits))
    source_logit, target_logit = logits[rows, source], logits[rows, target]
    others = logits.clone()
    others[rows, source] = float("-inf")
    others[rows, target] = float("-inf")
    return (source_logit - target_logit + margin).relu() + (others.max(-1).values - source_logit).relu()


def boundary_points(victim, images: torch.Tensor, source: torch.Tensor, target: torch.Tensor, margin: float,
                    steps: int, learning_rate: float, bounds: tuple[float, float]) -> torch.Tensor:
    r"""
    Moves each image from the victim's label `source[n]` toward label `target[n]`, past the boundary between them (see
    the module docstring): Adam on the pixels, each image frozen once its loss is 0, every step clamped to `bounds`.
    """
    points = images.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([points], lr=learning_rate)
    done = torch.zeros(len(points), dtype=torch.bool)
    with evaluating(victim):
        for _ in range(steps):
            logits = model_logits(victim, {"pixel_values": points}).float().cpu()
            losses = boundary_loss(logits, source, target, margin)
            done |= (losses <= 0).detach()
            if bool(done.all()):
                break
            # only the points' gradient: the victim's parameters are read, never given a `.grad`
            (gradient,) = torch.autograd.grad(losses[~done].sum(), points)
            points.grad = gradient
            frozen = points.detach()[done].clone()
            optimizer.step()
            with torch.no_grad():
                points.clamp_(*bounds)
                points[done] = frozen
    return points.detach()


class BoundaryFingerprint(LabelFingerprint):
    r"""
    An IPGuard-like fingerprint: images moved just across the victim's decision boundaries, the victim's labels on
    them, and the reference models' labels on them (see the module docstring and https://arxiv.org/abs/1910.12903).

    Build one with [`create`], test a suspect with [`test`] (labels only; no data set needed: the queries are kept in
    the fingerprint), keep it with [`save`] / [`load`].

    Args:
        queries (`torch.Tensor` of shape `(n, C, H, W)`): the optimised images, as the model's `pixel_values`.
        victim_labels (`torch.Tensor` of shape `(n,)`): the victim's label on each query.
        reference_labels (`torch.Tensor` of shape `(R, n)`): each reference model's label on each query.
        margin (`float`, *optional*): the margin `k` the queries were made with (for the record).

    Example:

    ```python
    >>> from hf_ingrain.fingerprints import BoundaryFingerprint
    >>> references = [independent_a, independent_b]  # models you trained without `model`: 16 or more for a claim
    >>> fingerprint = BoundaryFingerprint.create(model, splits["test"], references, num_queries=100, steps=50)
    >>> result = fingerprint.test(student)
    >>> print(result.summary())
    ```
    """

    def __init__(self, queries, victim_labels, reference_labels, margin: float | None = None):
        self.queries = torch.as_tensor(queries, dtype=torch.float32)
        self.victim_labels = torch.as_tensor(victim_labels, dtype=torch.long)
        self.reference_labels = torch.as_tensor(reference_labels, dtype=torch.long)
        if self.queries.ndim != 4 or self.victim_labels.shape != (len(self.queries),):
            raise ValueError("`queries` must be images `(n, C, H, W)` and `victim_labels` of shape `(n,)`.")
        if self.reference_labels.ndim != 2 or self.reference_labels.shape[1] != len(self.queries):
            raise ValueError(f"`reference_labels` must have shape (R, {len(self.queries)}), got "
                             f"{tuple(self.reference_labels.shape)}.")
        check_references(self.reference_labels, "boundary")
        self.margin = margin

    @property
    def victim_answers(self) -> torch.Tensor:
        """The victim's label on each query."""
        return self.victim_labels

    @classmethod
    def create(cls, victim, dataset, references, num_queries: int = 100, margin: float = 1.0, steps: int = 1000,
               learning_rate: float = 0.01, seed: int = 0, batch_size: int = 256) -> "BoundaryFingerprint":
        r"""
        The boundary fingerprint of `victim`: `num_queries` images of `dataset` moved across its boundaries.

        Args:
            victim (`torch.nn.Module`): the owner's image classifier (a transformers model or any module returning
                logits from `pixel_values`).
            dataset (`datasets.Dataset`): images of the task with a `pixel_values` column, prepared for the model; the
                starting points are drawn from it (labels are not read).
            references (`list[torch.nn.Module]`): at least 2 classifiers (16 or more for a strict alpha) that the
                owner trained by the victim's recipe with other seeds, without the victim.
            num_queries (`int`, *optional*, defaults to 100): queries to make (at least 20).
            margin (`float`, *optional*, defaults to 1.0): the logit margin `k` by which the target label must lead.
            steps (`int`, *optional*, defaults to 1000): most Adam steps per query (the paper's).
            learning_rate (`float`, *optional*, defaults to 0.01): Adam's step on the (normalised) pixels.
            seed (`int`, *optional*, defaults to 0): draws the starting images and the target labels.
            batch_size (`int`, *optional*, defaults to 256): images optimised and queried together.
        """
        references = check_references(references, "boundary")
        if num_queries < MIN_QUERIES:
            raise ValueError(f"`num_queries` must be at least {MIN_QUERIES}, got {num_queries}.")
        if margin < 0 or steps < 1 or learning_rate <= 0:
            raise ValueError(f"`margin` must be >= 0, `steps` >= 1 and `learning_rate` > 0; got {margin}, {steps} "
                             f"and {learning_rate}.")
        images = seed_images(dataset, num_queries, seed, "boundary")
        bounds = pixel_range(images)
        probabilities = pixel_outputs(victim, images, batch_size, probabilities=True)
        num_labels, source = probabilities.shape[-1], probabilities.argmax(-1)
        if num_labels < 3:
            raise ValueError(f"The victim has {num_labels} labels; a boundary fingerprint needs at least 3 (a label "
                             "to cross to and another to stay below). Use `VictimErrorFingerprint`.")
        generator = torch.Generator().manual_seed(seed + 1)
        # a target label other than the current one, uniformly
        target = (source + torch.randint(1, num_labels, (len(images),), generator=generator)) % num_labels
        queries = torch.cat([
            boundary_points(victim, images[start:start + batch_size], source[start:start + batch_size],
                            target[start:start + batch_size], margin, steps, learning_rate, bounds)
            for start in range(0, len(images), batch_size)
        ])
        victim_labels = pixel_outputs(victim, queries, batch_size)
        crossed = float((victim_labels == target).float().mean())
        if crossed < 0.5:
            logger.warning("Only %.0f%% of the boundary queries reached their target label in %d steps: raise `steps` "
                           "or `learning_rate`.", 100 * crossed, steps)
        reference_labels = torch.stack([pixel_outputs(model, queries, batch_size) for model in references])
        fingerprint = cls(queries, victim_labels, reference_labels, margin=margin)
        agreements = fingerprint.reference_agreements()
        warn_derived_references(agreements, "labels on its boundary points")
        logger.info("Boundary fingerprint: %d queries (%.0f%% crossed to their target), references match the victim "
                    "on %.3f of them on average.", len(queries), 100 * crossed, sum(agreements) / len(agreements))
        return fingerprint

    def test(self, suspect, alpha: float = DEFAULT_ALPHA, max_queries: int | None = None,
             batch_size: int = 256) -> FingerprintResult:
        r"""
        Tests whether `suspect` answers the victim's boundary points as the victim does, more than independent models
        do (labels only).

        Args:
            suspect (`torch.nn.Module`): the model under test (its top-1 label on each query is all that is read).
            alpha (`float`, *optional*, defaults to 1e-6): the significance level.
            max_queries (`int`, *optional*): use only the first `max_queries` queries (a query budget).
            batch_size (`int`, *optional*, defaults to 256): queries per forward pass.
        """
        if max_queries is not None and max_queries < 1:
            raise ValueError(f"`max_queries` must be at least 1, got {max_queries}.")
        count = self.num_queries if max_queries is None else min(max_queries, self.num_queries)
        answers = pixel_outputs(suspect, self.queries[:count], batch_size)
        agreement = (answers == self.victim_labels[:count]).float().mean().item()
        return key_draw_result(SCHEME, agreement, self.reference_agreements(count), count, alpha)

    def save(self, save_directory: str) -> None:
        r"""
        Writes the fingerprint to a new folder, readable by its owner only, whole or not at all:
        `fingerprint.json` (metadata, with the tensors' SHA-256) and `fingerprint.safetensors` (the queries, the
        victim's and the references' labels).

        Args:
            save_directory (`str`): a folder that does not exist yet, or is empty.
        """
        from .. import __version__

        tensors = {name: getattr(self, name) for name in TENSOR_NAMES}
        metadata = {"schema_version": SCHEMA_VERSION, "scheme": SCHEME, "paper": PAPER, "library_version": __version__,
                    "num_queries": self.num_queries, "num_references": self.num_references, "margin": self.margin,
                    "reference_agreements": self.reference_agreements()}
        save_fingerprint(save_directory, tensors, metadata)

    @classmethod
    def load(cls, save_directory: str) -> "BoundaryFingerprint":
        """Reads a fingerprint written by [`save`]."""
        metadata, tensors = read_fingerprint(save_directory, SCHEME, SCHEMA_VERSION, "boundary fingerprint")
        return cls(**{name: tensors[name] for name in TENSOR_NAMES}, margin=metadata.get("margin"))
