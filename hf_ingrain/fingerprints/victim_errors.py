r"""
A free fingerprint: the victim's own errors, after the Anna Karenina heuristic (AKH) of Godinot et al., "Queries,
Representation & Detection: The Next 100 Model Fingerprinting Schemes", AAAI 2025
(https://huggingface.co/papers/2412.13021). Our implementation, with the key-draw test of this package.

## What it costs and what it assumes
Nothing is trained into the owner's model: the owner keeps its model (the victim) as it is. Threat model: label-only
black-box access to the suspect (its top-1 label on chosen inputs). "All models are right alike; each wrong model is
wrong in its own way": on the inputs the victim misclassifies, a copy of the victim (stolen, fine-tuned a little,
distilled) tends to return the victim's *wrong* label, a model made without it much less often.

## The test
The queries are the labelled examples the victim misclassifies; the statistic is the suspect's agreement, the share
of queries on which its top-1 label is the victim's wrong label. Models not derived from the victim still share many
of its errors (the confusions of the task: a 4 written like a 9), so the agreement is compared, not with a fixed
rate, but with `R` reference models that the owner trained itself, independently of the victim, by the victim's own
recipe with other seeds: under the null hypothesis the suspect is one more such model, and the p-value is the
key-draw test of [`~hf_ingrain.verification.key_draw_p_value`] (the tail of Student's t with `R - 1` degrees of
freedom at the agreement's distance from the references' mean, in units of their spread).

Honest caveats (measured in `tests/test_fingerprints.py`: the embedded MNIST sample, tiny CNNs, 140 queries):
- Power is bounded by the references' spread. Reference models agree with the victim's wrong label on 0.29 to 0.62
  of the queries (sd 0.07): even the victim itself, at agreement 1, stands out by t = 8 only. A verdict at
  alpha = 1e-6 needs t above 15 with `R = 8` references (out of reach), 7.7 with 16, 6.4 with 24: use at least 16,
  and more for a strict alpha. A distilled student agrees on 0.84 (t = 5.7, p = 4e-6): clearly apart from the
  references, yet short of alpha = 1e-6 with 24 of them.
- The victim's errors lie on its decision boundary, where any training moves it: five steps of fine-tuning keep 0.96
  of them (verified), one epoch at a learning rate of 1e-4 brings the agreement back into the references' range
  (0.51, p = 0.14). The fingerprint costs nothing and survives what leaves the boundary in place, not more.
- The null treats the suspect as one more model trained like the references. Independent models trained longer or
  on other data share fewer of the victim's errors (the conservative direction: p = 0.99 measured); a suspect made
  worse than the references on purpose, or built to follow the confusions of the task, is bounded only as far as
  the references share those confusions.
- Keep the fingerprint private until a verification: a thief who knows the queries can answer them otherwise.
"""

import hashlib
import logging

import torch

from ..data import iterate_batches
from ..hashing import tensors_bytes
from ..suspects import collect_scores
from ..suspects.querying import COMPANION_INPUTS, KNOWN_MAIN_INPUTS
from ..verification import DEFAULT_ALPHA
from .base import (
    FingerprintResult,
    LabelFingerprint,
    check_references,
    key_draw_result,
    read_fingerprint,
    save_fingerprint,
    warn_derived_references,
)

logger = logging.getLogger(__name__)

SCHEME = "victim_errors"
SCHEMA_VERSION = 1
PAPER = "https://huggingface.co/papers/2412.13021"
TENSOR_NAMES = ("indices", "wrong_labels", "reference_labels")
MIN_QUERIES = 20
DIGEST_BATCH_SIZE = 256  # fixed: the digest must not depend on the batch size a caller queries with
INPUT_COLUMNS = tuple(dict.fromkeys((*KNOWN_MAIN_INPUTS, *COMPANION_INPUTS)))


def _input_columns(dataset, labelled: bool = False) -> list[str]:
    """The model-input columns of `dataset`; with `labelled`, refuses a data set without `labels` or `label`."""
    columns = getattr(dataset, "column_names", None) or []
    if labelled and "labels" not in columns and "label" not in columns:
        raise ValueError(
            f"The data set has no `labels` or `label` column (its columns: {columns}): a victim-error fingerprint "
            "needs labelled examples to find the victim's errors. Pass labelled data of the task."
        )
    found = [name for name in INPUT_COLUMNS if name in columns]
    if not found:
        raise ValueError(
            f"The data set has none of the model inputs {list(INPUT_COLUMNS)} (its columns: {columns}): prepare it "
            "for the model first (see `hf_ingrain.data.prepare_dataset`)."
        )
    return found


def _answers(model, dataset, batch_size: int, labelled: bool = False):
    """`model`'s top-1 label on every example of `dataset`, in order (`collect_scores`: eval mode, the inputs the
    model reads); with `labelled`, and the true labels (a `label` column is read as `labels`)."""
    scores, labels = collect_scores(model, dataset, batch_size=batch_size)
    answers = scores.argmax(-1)
    return (answers, labels.long().flatten()) if labelled else answers


def _queries_digest(queries, columns: list[str]) -> str:
    """SHA-256 of the queries' model inputs (their safetensors bytes, in fixed batches), in order."""
    digest = hashlib.sha256()
    for batch in iterate_batches(queries, DIGEST_BATCH_SIZE, columns=columns):
        tensors = {}
        for name in columns:
            value = batch[name]
            if torch.is_tensor(value):
                tensors[name] = value
            else:  # rows of different lengths (unpadded text): one tensor each
                tensors.update({f"{name}.{row}": torch.as_tensor(item) for row, item in enumerate(value)})
        digest.update(tensors_bytes(tensors))
    return digest.hexdigest()


class VictimErrorFingerprint(LabelFingerprint):
    r"""
    A victim-error fingerprint: the examples the owner's model misclassifies, its wrong labels on them, and how often
    independent reference models return those wrong labels (see the module docstring and
    https://huggingface.co/papers/2412.13021).

    Build one with [`create`], test a suspect with [`test`], keep it with [`save`] / [`load`].

    Args:
        indices (`torch.Tensor` of shape `(n,)`): the queries' positions in the data set the fingerprint was made on.
        wrong_labels (`torch.Tensor` of shape `(n,)`): the victim's (wrong) label on each query.
        reference_labels (`torch.Tensor` of shape `(R, n)`): each reference model's label on each query.
        queries_digest (`str`): SHA-256 of the queries' model inputs, to recognise the data set at test time.
        input_columns (`list[str]`): the data set's model-input columns the digest covers.
        num_examples (`int`, *optional*): the size of the data set the fingerprint was made on (for messages).

    Example:

    ```python
    >>> from hf_ingrain.fingerprints import VictimErrorFingerprint
    >>> references = [independent_a, independent_b]  # models you trained without `model`: 16 or more for a claim
    >>> fingerprint = VictimErrorFingerprint.create(model, splits["test"], references)
    >>> fingerprint.save("fingerprint/")
    >>> result = VictimErrorFingerprint.load("fingerprint/").test(student, splits["test"])
    >>> print(result.summary())
    ```
    """

    def __init__(self, indices, wrong_labels, reference_labels, queries_digest: str, input_columns,
                 num_examples: int | None = None):
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.wrong_labels = torch.as_tensor(wrong_labels, dtype=torch.long)
        self.reference_labels = torch.as_tensor(reference_labels, dtype=torch.long)
        if self.indices.ndim != 1 or self.wrong_labels.shape != self.indices.shape:
            raise ValueError("`indices` and `wrong_labels` must be 1-d tensors of the same length.")
        if self.reference_labels.ndim != 2 or self.reference_labels.shape[1] != len(self.indices):
            raise ValueError(f"`reference_labels` must have shape (R, {len(self.indices)}), got "
                             f"{tuple(self.reference_labels.shape)}.")
        check_references(self.reference_labels, "victim-error")
        self.queries_digest = queries_digest
        self.input_columns = list(input_columns)
        self.num_examples = num_examples

    @property
    def victim_answers(self) -> torch.Tensor:
        """The victim's (wrong) label on each query: what a copy returns."""
        return self.wrong_labels

    @classmethod
    def create(cls, victim, dataset, references, num_queries: int | None = None,
               batch_size: int = 256) -> "VictimErrorFingerprint":
        r"""
        The fingerprint of `victim` on the labelled `dataset`: the examples it misclassifies, and the reference
        models' labels on them.

        Args:
            victim (`torch.nn.Module`): the owner's classifier (a transformers model or any module returning logits).
            dataset (`datasets.Dataset`): labelled examples of the task, in torch format, with the model's inputs
                (`pixel_values`, or `input_ids` and `attention_mask`) and `labels` (or `label`). Use data the victim
                was not trained on: it makes few errors on its training data.
            references (`list[torch.nn.Module]`): at least 2 classifiers (16 or more for a strict alpha) that the
                owner trained by the victim's recipe with other seeds, without the victim (no distillation from it,
                no shared weights): their agreements are the null distribution.
            num_queries (`int`, *optional*): keep the first `num_queries` errors (in the data set's order); default
                all of them. At least 20.
            batch_size (`int`, *optional*, defaults to 256): examples per forward pass.
        """
        references = check_references(references, "victim-error")
        if num_queries is not None and num_queries < MIN_QUERIES:
            raise ValueError(f"`num_queries` must be at least {MIN_QUERIES}, got {num_queries}.")
        input_columns = _input_columns(dataset, labelled=True)
        predicted, labels = _answers(victim, dataset, batch_size, labelled=True)
        errors = (predicted != labels).nonzero().flatten()
        if len(errors) < MIN_QUERIES:
            raise ValueError(
                f"The victim misclassifies only {len(errors)} of the {len(dataset)} examples; a victim-error "
                f"fingerprint needs at least {MIN_QUERIES}. Pass more labelled data the victim was not trained on "
                "(a held-out or test split)."
            )
        if num_queries is not None:
            errors = errors[:num_queries]
        queries = dataset.select(errors.tolist())
        reference_labels = torch.stack([_answers(model, queries, batch_size) for model in references])
        fingerprint = cls(errors, predicted[errors], reference_labels, _queries_digest(queries, input_columns),
                          input_columns, num_examples=len(dataset))
        agreements = fingerprint.reference_agreements()
        warn_derived_references(agreements, "wrong labels")
        logger.info("Victim-error fingerprint: %d queries (of %d errors on %d examples), references agree on "
                    "%.3f of them on average.", len(errors), int((predicted != labels).sum()), len(dataset),
                    sum(agreements) / len(agreements))
        return fingerprint

    def _queries(self, dataset):
        """The queries in `dataset`, refused unless `dataset` holds the very inputs the fingerprint was made on."""
        size = len(dataset)
        if int(self.indices.max()) >= size:
            raise ValueError(
                f"The data set has {size} examples but the fingerprint's queries reach position "
                f"{int(self.indices.max())} (it was made on {self.num_examples} examples): pass the data set the "
                "fingerprint was made on, in the same order."
            )
        missing = [name for name in self.input_columns if name not in (dataset.column_names or [])]
        if missing:
            raise ValueError(f"The data set lacks the columns {missing} the fingerprint was made on: pass the data "
                             "set the fingerprint was made on, prepared the same way.")
        queries = dataset.select(self.indices.tolist())
        if _queries_digest(queries, self.input_columns) != self.queries_digest:
            raise ValueError(
                "The data set's examples at the fingerprint's query positions are not the inputs the fingerprint was "
                "made on (their digest differs): pass the data set the fingerprint was made on, in the same order "
                "and prepared the same way."
            )
        return queries

    def test(self, suspect, dataset, alpha: float = DEFAULT_ALPHA, max_queries: int | None = None,
             batch_size: int = 256) -> FingerprintResult:
        r"""
        Tests whether `suspect` shares the victim's errors more than independent models do (labels only).

        Args:
            suspect (`torch.nn.Module`): the model under test (its top-1 label on each query is all that is read).
            dataset (`datasets.Dataset`): the data set the fingerprint was made on (checked by its queries' digest).
            alpha (`float`, *optional*, defaults to 1e-6): the significance level.
            max_queries (`int`, *optional*): use only the first `max_queries` queries (a query budget).
            batch_size (`int`, *optional*, defaults to 256): queries per forward pass.
        """
        if max_queries is not None and max_queries < 1:
            raise ValueError(f"`max_queries` must be at least 1, got {max_queries}.")
        count = self.num_queries if max_queries is None else min(max_queries, self.num_queries)
        queries = self._queries(dataset).select(range(count))
        answers = _answers(suspect, queries, batch_size)
        agreement = (answers == self.wrong_labels[:count]).float().mean().item()
        reference_agreements = self.reference_agreements(count)
        return key_draw_result(SCHEME, agreement, reference_agreements, count, alpha)

    def _metadata(self) -> dict:
        from .. import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "scheme": SCHEME,
            "paper": PAPER,
            "library_version": __version__,
            "num_queries": self.num_queries,
            "num_references": self.num_references,
            "num_examples": self.num_examples,
            "input_columns": self.input_columns,
            "queries_digest": self.queries_digest,
            "reference_agreements": self.reference_agreements(),
        }

    def save(self, save_directory: str) -> None:
        r"""
        Writes the fingerprint to a new folder: `fingerprint.json` (metadata) and `fingerprint.safetensors` (the
        queries' positions, the victim's wrong labels, the references' labels). The folder is written whole or not
        at all, readable by its owner only: whoever knows the queries can evade the test.

        Args:
            save_directory (`str`): a folder that does not exist yet, or is empty.
        """
        save_fingerprint(save_directory, {name: getattr(self, name) for name in TENSOR_NAMES}, self._metadata())

    @classmethod
    def load(cls, save_directory: str) -> "VictimErrorFingerprint":
        """Reads a fingerprint written by [`save`]."""
        metadata, tensors = read_fingerprint(save_directory, SCHEME, SCHEMA_VERSION, "victim-error fingerprint")
        fingerprint = cls(**{name: tensors[name] for name in TENSOR_NAMES}, queries_digest=metadata["queries_digest"],
                          input_columns=metadata["input_columns"], num_examples=metadata.get("num_examples"))
        counts = (fingerprint.num_queries, fingerprint.num_references)
        if counts != (metadata["num_queries"], metadata["num_references"]):
            raise ValueError(f"{save_directory!r}: its tensors do not match its metadata's counts; it was altered.")
        return fingerprint
