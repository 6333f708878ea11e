r"""
A free fingerprint: the victim's decision distance vector, after ModelDiff (Li, Chen, Zhang, Cai and Xie, "ModelDiff:
Testing-Based DNN Similarity Comparison for Model Reuse Detection", ISSTA 2021, https://arxiv.org/abs/2106.08890),
with the adversarial pairs of the QuRD benchmark's implementation (https://huggingface.co/papers/2412.13021). Our
implementation, with the key-draw test of this package.

## How the queries are made
`n` images of the task are drawn, and each is paired with an adversarial twin: projected gradient ascent (PGD) on
the victim's cross-entropy with its own label, within an L-infinity ball of radius `epsilon` times the pixel range
(random start, `steps` steps of `2.5 epsilon / steps`). The queries are the `2n` images.

## The test
A model's decision distance vector (DDV) has one entry per pair: `1 - cos(p(x), p(x'))`, the cosine distance between
its probabilities on the image and on its twin. The twins are made against the victim, so the victim's DDV is large
where its boundary is close; a copy's boundary is close in the same places. The statistic is the cosine similarity of
the suspect's DDV with the victim's. From labels only (QuRD's hard variant) a pair's entry is `(label(x') - label(x))
mod K`, and the statistic the share of pairs where the suspect's entry equals the victim's. Either is compared with
reference models the owner trained by the victim's recipe with other seeds: the key-draw test
([`~hf_ingrain.verification.key_draw_p_value`]); its floor on the spread (one agreement's binomial noise) is a
conservative stand-in for the cosine similarity.

Honest caveats:
- The twins are made against the victim's weights; what moves its boundary moves the DDV. Measured in
  `tests/test_fingerprints.py`.
- The queries are known once used; keep the fingerprint private until a verification.
- Images only: the twins are made by moving pixels.
"""

import logging

import torch
import torch.nn.functional as F

from ..suspects.querying import evaluating, model_logits
from ..verification import DEFAULT_ALPHA
from .base import (
    FingerprintResult,
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

SCHEME = "decision_distance"
SCHEMA_VERSION = 1
PAPER = "https://arxiv.org/abs/2106.08890"
TENSOR_NAMES = ("images", "twins", "victim_ddv", "victim_hard", "reference_ddv", "reference_hard")
MIN_PAIRS = 10


def adversarial_twins(victim, images: torch.Tensor, epsilon: float, steps: int, bounds: tuple[float, float],
                      generator: torch.Generator) -> torch.Tensor:
    r"""
    L-infinity PGD on the victim's cross-entropy with its own label on each image: a random start in the ball of
    radius `epsilon * (high - low)`, then `steps` signed-gradient steps of `2.5 / steps` of the radius, each projected
    back into the ball and the pixel range `bounds`.
    """
    low, high = bounds
    radius = epsilon * (high - low)
    step = 2.5 * radius / steps
    labels = pixel_outputs(victim, images, len(images))
    with evaluating(victim):
        start = (torch.rand(images.shape, generator=generator) * 2 - 1) * radius
        twins = (images + start).clamp(low, high)
        for _ in range(steps):
            twins.requires_grad_(True)
            logits = model_logits(victim, {"pixel_values": twins})
            loss = F.cross_entropy(logits.float(), labels.to(logits.device))
            (gradient,) = torch.autograd.grad(loss, twins)  # the victim's parameters get no `.grad`
            with torch.no_grad():
                twins = twins + step * gradient.sign()
                twins = torch.maximum(torch.minimum(twins, images + radius), images - radius).clamp(low, high)
    return twins.detach()


def decision_distances(model, images: torch.Tensor, twins: torch.Tensor, batch_size: int):
    """`model`'s DDV on the pairs (`1 - cos` of its probabilities) and its hard DDV (`(label(x') - label(x)) mod K`)."""
    probabilities = pixel_outputs(model, images, batch_size, probabilities=True)
    twin_probabilities = pixel_outputs(model, twins, batch_size, probabilities=True)
    ddv = 1 - F.cosine_similarity(probabilities, twin_probabilities, dim=1)
    hard = (twin_probabilities.argmax(-1) - probabilities.argmax(-1)) % probabilities.shape[-1]
    return ddv, hard


def ddv_similarity(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of decision distance vectors along the last dimension (0 for an all-zero vector)."""
    return F.cosine_similarity(first, second, dim=-1, eps=1e-12)


class DecisionDistanceFingerprint:
    r"""
    A ModelDiff-like fingerprint: image pairs (an image and its adversarial twin against the victim), the victim's
    decision distance vector on them, and the reference models' (see the module docstring and
    https://arxiv.org/abs/2106.08890).

    Build one with [`create`], test a suspect with [`test`] (from its probabilities, or its labels only), keep it
    with [`save`] / [`load`]. Each pair is two queries.

    Args:
        images (`torch.Tensor` of shape `(n, C, H, W)`): the pairs' first images, as the model's `pixel_values`.
        twins (`torch.Tensor` of shape `(n, C, H, W)`): their adversarial twins.
        victim_ddv (`torch.Tensor` of shape `(n,)`): the victim's decision distance on each pair.
        victim_hard (`torch.Tensor` of shape `(n,)`): the victim's label change on each pair.
        reference_ddv (`torch.Tensor` of shape `(R, n)`): each reference model's decision distances.
        reference_hard (`torch.Tensor` of shape `(R, n)`): each reference model's label changes.
        epsilon (`float`, *optional*): the twins' radius, a share of the pixel range (for the record).

    Example:

    ```python
    >>> from hf_ingrain.fingerprints import DecisionDistanceFingerprint
    >>> references = [independent_a, independent_b]  # models you trained without `model`: 16 or more for a claim
    >>> fingerprint = DecisionDistanceFingerprint.create(model, splits["test"], references, num_pairs=50)
    >>> print(fingerprint.test(student).summary())
    >>> print(fingerprint.test(student, labels_only=True).summary())
    ```
    """

    def __init__(self, images, twins, victim_ddv, victim_hard, reference_ddv, reference_hard,
                 epsilon: float | None = None):
        self.images = torch.as_tensor(images, dtype=torch.float32)
        self.twins = torch.as_tensor(twins, dtype=torch.float32)
        self.victim_ddv = torch.as_tensor(victim_ddv, dtype=torch.float32)
        self.victim_hard = torch.as_tensor(victim_hard, dtype=torch.long)
        self.reference_ddv = torch.as_tensor(reference_ddv, dtype=torch.float32)
        self.reference_hard = torch.as_tensor(reference_hard, dtype=torch.long)
        count = len(self.images)
        if self.images.ndim != 4 or self.twins.shape != self.images.shape:
            raise ValueError("`images` and `twins` must be images `(n, C, H, W)` of the same shape.")
        if self.victim_ddv.shape != (count,) or self.victim_hard.shape != (count,):
            raise ValueError(f"`victim_ddv` and `victim_hard` must have shape ({count},).")
        if self.reference_ddv.ndim != 2 or self.reference_ddv.shape[1] != count or (
                self.reference_hard.shape != self.reference_ddv.shape):
            raise ValueError(f"`reference_ddv` and `reference_hard` must have shape (R, {count}).")
        check_references(self.reference_ddv, "decision-distance")
        self.epsilon = epsilon

    @property
    def num_pairs(self) -> int:
        return len(self.images)

    @property
    def num_queries(self) -> int:
        return 2 * self.num_pairs

    @property
    def num_references(self) -> int:
        return len(self.reference_ddv)

    def reference_agreements(self, num_pairs: int | None = None, labels_only: bool = False) -> list[float]:
        """Each reference model's similarity to the victim on the first `num_pairs` pairs."""
        count = self.num_pairs if num_pairs is None else num_pairs
        if labels_only:
            return (self.reference_hard[:, :count] == self.victim_hard[:count]).float().mean(1).tolist()
        return ddv_similarity(self.reference_ddv[:, :count], self.victim_ddv[:count]).tolist()

    @classmethod
    def create(cls, victim, dataset, references, num_pairs: int = 50, epsilon: float = 0.1, steps: int = 40,
               seed: int = 0, batch_size: int = 256) -> "DecisionDistanceFingerprint":
        r"""
        The decision-distance fingerprint of `victim`: `num_pairs` images of `dataset` and their adversarial twins.

        Args:
            victim (`torch.nn.Module`): the owner's image classifier.
            dataset (`datasets.Dataset`): images of the task with a `pixel_values` column, prepared for the model
                (labels are not read).
            references (`list[torch.nn.Module]`): at least 2 classifiers (16 or more for a strict alpha) that the
                owner trained by the victim's recipe with other seeds, without the victim.
            num_pairs (`int`, *optional*, defaults to 50): pairs to make (at least 10); each is two queries.
            epsilon (`float`, *optional*, defaults to 0.1): the twins' L-infinity radius as a share of the pixel range.
                QuRD uses 0.03 on ImageNet-scale images; on digits 0.03 changes the victim's label on too few pairs
                to tell even the victim from its references (measured: p = 4e-6 with 24 references), 0.1 does.
            steps (`int`, *optional*, defaults to 40): PGD steps.
            seed (`int`, *optional*, defaults to 0): draws the images and the random starts.
            batch_size (`int`, *optional*, defaults to 256): images attacked and queried together.
        """
        references = check_references(references, "decision-distance")
        if num_pairs < MIN_PAIRS:
            raise ValueError(f"`num_pairs` must be at least {MIN_PAIRS}, got {num_pairs}.")
        if not 0 < epsilon < 1 or steps < 1:
            raise ValueError(f"`epsilon` must be in (0, 1) (a share of the pixel range) and `steps` >= 1; got "
                             f"{epsilon} and {steps}.")
        images = seed_images(dataset, num_pairs, seed, "decision-distance")
        bounds = pixel_range(images)
        generator = torch.Generator().manual_seed(seed + 1)
        twins = torch.cat([adversarial_twins(victim, images[start:start + batch_size], epsilon, steps, bounds,
                                             generator) for start in range(0, len(images), batch_size)])
        victim_ddv, victim_hard = decision_distances(victim, images, twins, batch_size)
        distances = [decision_distances(model, images, twins, batch_size) for model in references]
        fingerprint = cls(images, twins, victim_ddv, victim_hard, torch.stack([ddv for ddv, _ in distances]),
                          torch.stack([hard for _, hard in distances]), epsilon=epsilon)
        agreements = fingerprint.reference_agreements()
        warn_derived_references(agreements, "decision distance vector")
        logger.info("Decision-distance fingerprint: %d pairs, the victim's label changes on %.0f%% of them; the "
                    "references' DDVs have cosine similarity %.3f with the victim's on average.", num_pairs,
                    100 * float((victim_hard != 0).float().mean()), sum(agreements) / len(agreements))
        return fingerprint

    def test(self, suspect, labels_only: bool = False, alpha: float = DEFAULT_ALPHA, max_queries: int | None = None,
             batch_size: int = 256) -> FingerprintResult:
        r"""
        Tests whether `suspect`'s decision distances follow the victim's more than independent models' do.

        Args:
            suspect (`torch.nn.Module`): the model under test.
            labels_only (`bool`, *optional*, defaults to `False`): read only its top-1 labels (the hard DDV).
            alpha (`float`, *optional*, defaults to 1e-6): the significance level.
            max_queries (`int`, *optional*): a query budget: the first `max_queries // 2` pairs (at least one pair).
            batch_size (`int`, *optional*, defaults to 256): queries per forward pass.
        """
        if max_queries is not None and max_queries < 2:
            raise ValueError(f"`max_queries` must be at least 2 (one pair), got {max_queries}.")
        count = self.num_pairs if max_queries is None else min(max_queries // 2, self.num_pairs)
        ddv, hard = decision_distances(suspect, self.images[:count], self.twins[:count], batch_size)
        if labels_only:
            agreement = (hard == self.victim_hard[:count]).float().mean().item()
        else:
            agreement = ddv_similarity(ddv, self.victim_ddv[:count]).item()
        references = self.reference_agreements(count, labels_only=labels_only)
        result = key_draw_result(SCHEME, agreement, references, count, alpha, labels_only=labels_only)
        result.num_queries = 2 * count
        return result

    def save(self, save_directory: str) -> None:
        r"""
        Writes the fingerprint to a new folder, readable by its owner only, whole or not at all:
        `fingerprint.json` (metadata, with the tensors' SHA-256) and `fingerprint.safetensors`.

        Args:
            save_directory (`str`): a folder that does not exist yet, or is empty.
        """
        from .. import __version__

        metadata = {"schema_version": SCHEMA_VERSION, "scheme": SCHEME, "paper": PAPER, "library_version": __version__,
                    "num_pairs": self.num_pairs, "num_references": self.num_references, "epsilon": self.epsilon,
                    "reference_agreements": self.reference_agreements()}
        save_fingerprint(save_directory, {name: getattr(self, name) for name in TENSOR_NAMES}, metadata)

    @classmethod
    def load(cls, save_directory: str) -> "DecisionDistanceFingerprint":
        """Reads a fingerprint written by [`save`]."""
        metadata, tensors = read_fingerprint(save_directory, SCHEME, SCHEMA_VERSION, "decision-distance fingerprint")
        return cls(**{name: tensors[name] for name in TENSOR_NAMES}, epsilon=metadata.get("epsilon"))
