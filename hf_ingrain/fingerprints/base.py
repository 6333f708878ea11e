r"""
What every fingerprint of this package shares: its result, the key-draw test against the owner's reference models,
how a model is queried (labels or probabilities, through `collect_scores`), how synthetic image queries start, and
the private, digest-bound files a fingerprint is kept in.
"""

import json
import logging
import os
from dataclasses import asdict, dataclass, field

import torch

from ..data import draw_examples
from ..data.query_set import TensorQueries
from ..files import atomic_folder, write_json
from ..hashing import tensors_sha256
from ..suspects import collect_scores
from ..verification import DEFAULT_ALPHA, format_p_value, key_draw_p_value

logger = logging.getLogger(__name__)

METADATA_FILE = "fingerprint.json"
TENSORS_FILE = "fingerprint.safetensors"
MIN_REFERENCES = 2
# a reference model this close to the victim is probably derived from it (a null made of copies hides every copy)
DERIVED_REFERENCE_AGREEMENT = 0.95


@dataclass
class FingerprintResult:
    r"""
    The outcome of a fingerprint's `test`.

    Args:
        agreement (`float`): the suspect's similarity to the victim on the fingerprint's queries: the share of queries
            on which it returns the victim's label (victim errors, boundary), or the cosine similarity of its decision
            distance vector with the victim's (decision distance).
        reference_mean (`float`): the reference models' mean agreement on the same queries.
        reference_sd (`float`): their spread (at least one agreement's binomial noise).
        num_queries (`int`): number of queries the suspect answered.
        p_value (`float`): the key-draw test's p-value of `agreement` against the references.
        verified (`bool`): `p_value <= alpha`.
        alpha (`float`): the significance level.
        num_references (`int`): number of reference models.
        t_statistic (`float`): the distance of `agreement` from `reference_mean`, in units of the prediction spread.
        reference_agreements (`list[float]`): each reference model's agreement.
        scheme (`str`): the fingerprint (`"victim_errors"`, `"boundary"`, `"decision_distance"`).
        labels_only (`bool`): whether only the suspect's top-1 labels were read.
    """

    agreement: float
    reference_mean: float
    reference_sd: float
    num_queries: int
    p_value: float
    verified: bool
    alpha: float = DEFAULT_ALPHA
    num_references: int = 0
    t_statistic: float = 0.0
    reference_agreements: list = field(default_factory=list)
    scheme: str = "victim_errors"
    labels_only: bool = True

    @property
    def null_rate(self) -> float:
        """The agreement expected of a model not derived from the victim: the references' mean (as a verification's
        `null_rate`, for tables that show both)."""
        return self.reference_mean

    @property
    def protocol(self) -> str:
        return f"{self.scheme}_fingerprint"

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """The verdict in one line, with the numbers it rests on."""
        verdict = "VERIFIED" if self.verified else "not verified"
        return (
            f"{verdict} ({self.scheme} fingerprint, {'labels' if self.labels_only else 'scores'}): agreement "
            f"{self.agreement:.3f} on {self.num_queries} queries vs {self.num_references} reference models "
            f"{self.reference_mean:.3f} (sd {self.reference_sd:.3f}): t = {self.t_statistic:.1f}, "
            f"p {format_p_value(self.p_value)} (alpha = {self.alpha:g})"
        )

    def __str__(self) -> str:
        return self.summary()


class LabelFingerprint:
    r"""
    What the fingerprints that compare labels share: the label the victim gave each query (`victim_answers`) and the
    label each reference model gave it (`reference_labels`, shape `(R, n)`), hence the references' agreements on
    the first queries of any budget.
    """

    victim_answers: "torch.Tensor"
    reference_labels: "torch.Tensor"

    @property
    def num_queries(self) -> int:
        return self.reference_labels.shape[1]

    @property
    def num_references(self) -> int:
        return len(self.reference_labels)

    def reference_agreements(self, num_queries: int | None = None) -> list[float]:
        """Each reference model's share of the victim's answers, on the first `num_queries` queries."""
        count = self.num_queries if num_queries is None else num_queries
        return (self.reference_labels[:, :count] == self.victim_answers[:count]).float().mean(1).tolist()


def key_draw_result(scheme: str, agreement: float, reference_agreements: list, num_queries: int,
                    alpha: float = DEFAULT_ALPHA, labels_only: bool = True) -> FingerprintResult:
    """The key-draw test of `agreement` against the references' agreements, as a [`FingerprintResult`]."""
    p_value, numbers = key_draw_p_value(agreement, reference_agreements, num_queries)
    return FingerprintResult(
        agreement=agreement, reference_mean=numbers["mean"], reference_sd=numbers["sd"], num_queries=num_queries,
        p_value=p_value, verified=p_value <= alpha, alpha=alpha, num_references=numbers["num_references"],
        t_statistic=numbers["t"], reference_agreements=list(reference_agreements), scheme=scheme,
        labels_only=labels_only,
    )


def check_references(references, what: str) -> list:
    """`references` as a list, refused with the fix when there are fewer than 2."""
    references = list(references)
    if len(references) < MIN_REFERENCES:
        raise ValueError(
            f"A {what} fingerprint needs at least {MIN_REFERENCES} reference models, got {len(references)}: train "
            "more models by the victim's recipe with other seeds (16 or more for alpha = 1e-6) and pass them as "
            "`references`."
        )
    return references


def warn_derived_references(agreements: list[float], what: str) -> None:
    """Warns about each reference model that agrees with the victim as much as a copy would."""
    for number, agreement in enumerate(agreements):
        if agreement >= DERIVED_REFERENCE_AGREEMENT:
            logger.warning("Reference model %d agrees with the victim's %s at %.2f: is it derived from the victim? "
                           "References must be trained without it.", number, what, agreement)


def pixel_outputs(model, pixel_values: torch.Tensor, batch_size: int, probabilities: bool = False) -> torch.Tensor:
    """`model`'s top-1 label (or, with `probabilities`, its softmax) on each image of `pixel_values`, in eval mode
    (`collect_scores`, the package's one way to query a model)."""
    scores, _ = collect_scores(model, TensorQueries({"pixel_values": pixel_values}), batch_size=batch_size)
    return scores.softmax(-1) if probabilities else scores.argmax(-1)


def seed_images(dataset, count: int, seed: int, what: str) -> torch.Tensor:
    r"""
    `count` images of `dataset` drawn without replacement by `seed`, as the float `pixel_values` the model reads: the
    starting points of synthetic queries. Refuses data without `pixel_values`, or with fewer than `count` examples.
    """
    if count > len(dataset):
        raise ValueError(f"A {what} fingerprint of {count} queries needs at least {count} starting images; the data "
                         f"set has {len(dataset)}. Pass more images, or ask for fewer queries.")
    drawn = draw_examples(dataset, count, seed, ["pixel_values"])  # a `set_transform` applies here
    if "pixel_values" not in drawn:
        raise ValueError(
            f"A {what} fingerprint optimises image inputs and needs `pixel_values` (the data set gives "
            f"{dataset.column_names}): prepare images for the model first (`hf_ingrain.data.prepare_dataset`). For a "
            "text model use `VictimErrorFingerprint`, which queries with the data set's own examples."
        )
    return drawn["pixel_values"].float()


def pixel_range(images: torch.Tensor) -> tuple[float, float]:
    """The range of valid pixel values, read from the starting images (after the processor's normalisation)."""
    low, high = float(images.min()), float(images.max())
    if high <= low:
        raise ValueError("The starting images are constant: a fingerprint needs real images of the task.")
    return low, high


def save_fingerprint(save_directory: str, tensors: dict, metadata: dict) -> None:
    """Writes `tensors` and `metadata` (with the tensors' digest) to a new private folder, whole or not at all."""
    from safetensors.torch import save_file

    tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
    with atomic_folder(save_directory, what="the fingerprint", private=True) as staging:
        save_file(tensors, os.path.join(staging, TENSORS_FILE))
        write_json(os.path.join(staging, METADATA_FILE), {**metadata, "tensors_sha256": tensors_sha256(tensors)})


def read_fingerprint(save_directory: str, scheme: str, schema_version: int, description: str):
    """The `(metadata, tensors)` of a fingerprint folder written by [`save_fingerprint`] for `scheme`, refused when
    it is another scheme or version, or when its tensors are not the ones its metadata was written with."""
    from safetensors.torch import load_file

    path = os.path.join(save_directory, METADATA_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{save_directory!r} holds no {METADATA_FILE}: not a saved {description}.")
    with open(path, encoding="utf-8") as f:
        metadata = json.load(f)
    if metadata.get("scheme") != scheme or metadata.get("schema_version") != schema_version:
        raise ValueError(
            f"{save_directory!r} holds a {metadata.get('scheme')!r} fingerprint of schema version "
            f"{metadata.get('schema_version')!r}; this reader takes {scheme!r} version {schema_version}."
        )
    tensors = load_file(os.path.join(save_directory, TENSORS_FILE))
    if "tensors_sha256" in metadata and tensors_sha256(tensors) != metadata["tensors_sha256"]:
        raise ValueError(f"{save_directory!r}: its tensors are not the ones its metadata was written with; it was "
                         "altered.")
    return metadata, tensors
