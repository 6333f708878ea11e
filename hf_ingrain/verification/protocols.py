r"""
Verification: does a suspect model carry the owner's watermark?

Every test here has the same shape. The owner counts `k` "agreements" among `n` queries, and compares them with a
*null rate* `p0`: the largest probability of agreeing on a query that a model **not derived from the key** can have.
The p-value is the one-sided binomial tail `P[Binomial(n, p0) >= k]`, and the suspect is `verified` when
`p_value <= alpha`.

## What `alpha` means
`alpha` is the largest probability the owner accepts of accusing a model that was not derived from the key: under
the null hypothesis (the suspect was trained without access to the key or to a model trained with it), the test
says `verified` with probability at most `alpha`, for one test. The default 1e-6 is far below the usual 0.05
because a claim of ownership must stand against anyone who trains many models; an owner who tests `m` suspects (or
`m` keys, data sets or protocols) and wants the same guarantee for the whole batch should use `alpha / m`.

## The ingrain protocol
On benign inputs `x` (ordinary data of the task, not the carriers), take the suspect's top class `a(x)` and its
runner-up `r(x)` (its best class other than `a(x)`), and the ingrainer's choice `s(x)`: the ingrainer's best class
other than `a(x)`. A model trained with [`IngrainTrainer`], or distilled from one, ranks classes like the ingrainer,
so `r(x) = s(x)` on many inputs. The statistic is the number of agreements `k` among `n` queries.

What the suspect must expose: its top class and its runner-up, nothing else. Logits, probabilities (a softmax does
not change the ranking) and top-k scores with `k >= 2` (what a `transformers` pipeline returns: the runner-up is the
second of the `k`) therefore give the same test; `verify()` detects which one a callable returns (`scores="auto"`),
or can be told (`scores="top_k", top_k=2` also simulates a top-2 API on a full model). A suspect that returns labels
only has no runner-up: the label-only protocols read a runner-up-like class from its labels (below).

## The label-only protocols
`"ingrain_labels"` sends each benign input clean, then occluded step by step until the suspect's label changes, and
compares that first other label with the key's choice; on labelled data, where the suspect errs, it compares the
wrong label with the key's choice among the classes other than the true one. `"ingrain_errors"` is that error route
alone (one query per input). Both use the same null rate and key-draw test; `max_queries` caps what the suspect is
sent. See [`hf_ingrain.verification.label_only`].

## The null rate, and the key-draw test
The statistics of the ingrain protocol, and the argument why they bound what a model not derived from the key can
reach, are in [`hf_ingrain.verification.statistics`]: the binomial test against the null rate, and the key-draw test against
the key's reference ingrainers. Both must pass.

## The scores protocol
`"ingrain_scores"` reads every class's score (logits or probabilities) on the same benign queries. Each ingrainer's
*own part* is its centred log-probabilities minus the mean of the key's other ingrainers': the task, which they all
learned, cancels, and what its seed alone made is left. The statistic is the correlation of the suspect's centred
scores with the key's own part, and the key-draw test compares it with the suspect's correlations with each
reference's own part (there is no null rate: under the null hypothesis the key is one draw of the references'
procedure, see [`hf_ingrain.verification.statistics.score_correlations`]). It needs a key with 2 references or more.
It uses what the runner-up leaves out (how much, not only which class), so it sees a watermark that has not yet
reordered the classes, and it works on a binary task, where the runner-up is always the other class. In `result`,
`agreement` is that correlation and `null_rate` the references' mean; `num_agreements` is 0 (nothing is counted).

## The carriers protocol
The classic trigger-set test: the suspect's top class on the key's carriers against the carrier labels. The labels
were drawn uniformly at random, independently of the carriers, so for any model not derived from the key each
agreement is an independent coin with probability exactly `1 / K`: the null rate is exact. It needs labels only
(it works with a callable or an API that returns nothing else). Distillation on benign data usually erases it,
which is the point of ingrain.
"""

import logging
import math
import warnings

import torch

from ..data.committed_test import (
    INGRAIN_PROTOCOLS,
    LABEL_ONLY_PROTOCOLS,
    committed_test,
    read_committed_test,
    test_differences,
)
from ..data.preparation import check_model_modality, prepare_dataset
from ..data.query_set import committed_set, is_committed, read_queries
from ..keys import WatermarkKey
from ..keys.inputs import carrier_batch
from ..keys.querying import remembered_scores
from ..suspects import collect_scores, resolve_model, restrict_scores
from .result import VerificationResult
from .statistics import (
    ingrain_null_rate,
    ingrain_p_value,
    key_agreements,
    runner_up,
    score_correlations,
    score_p_value,
)

logger = logging.getLogger(__name__)

LABEL_PROTOCOLS = LABEL_ONLY_PROTOCOLS
PROTOCOLS = INGRAIN_PROTOCOLS + ("carriers",)
DEFAULT_ALPHA = 1e-6


# ------------------------------------------------------------------------------------------- the tests
def verify(
    model,
    key,
    dataset=None,
    *,
    protocol: str = "ingrain",
    alpha: float = DEFAULT_ALPHA,
    batch_size: int = 256,
    show_progress: bool = False,
    scores: str = "auto",
    top_k: int | None = None,
    committed_digest: str | dict | None = None,
    processor=None,
    max_queries: int | None = None,
    ladder: str = "occlusion",
    **columns,
) -> VerificationResult:
    r"""
    Tests whether `model` carries the watermark of `key` (see the module docstring for the statistics).

    Args:
        model (`nn.Module`, `str`, `transformers.Pipeline` or callable):
            The suspect: a model, a local folder (safetensors weights only, no remote code), an
            `image-classification` pipeline, or a callable returning logits, probabilities, top-k scores or labels
            for a dict batch.
        key ([`WatermarkKey`], or a baseline scheme's key):
            The owner's key. A key from `hf_ingrain.watermarks` is verified by its own scheme (`protocol` and
            `dataset` are then not used).
        dataset (`datasets.Dataset`, *optional*):
            Benign queries, required for `"ingrain"`: the model's inputs (`pixel_values`, or `input_ids` and
            `attention_mask`; `labels` or `label` optional), a data set with a transform that makes them
            (`set_transform`), or raw images or texts with `processor` (see `hf_ingrain.data.preparation`).
        protocol (`str`, *optional*, defaults to `"ingrain"`):
            `"ingrain"` (runner-up agreement on benign data), `"ingrain_scores"` (every class's score on benign
            data, correlated with the key's own part; see the module docstring), `"ingrain_labels"` (labels only:
            the first other label along a degradation ladder, and the wrong labels on labelled data),
            `"ingrain_errors"` (labels only: the wrong labels on labelled data) or `"carriers"` (accuracy on the
            key's carriers).
        alpha (`float`, *optional*, defaults to 1e-6):
            Significance level: the largest probability of verifying a model not derived from the key.
            `verified = p_value <= alpha`.
        batch_size (`int`, *optional*, defaults to 256):
            Queries per call.
        show_progress (`bool`, *optional*, defaults to `False`):
            Show a progress bar while querying.
        scores (`str`, *optional*, defaults to `"auto"`):
            What the suspect exposes: `"auto"` (detected from what it returns), `"logits"`, `"probabilities"`,
            `"top_k"` (only the `top_k` highest scores are used) or `"labels"` (only the top class is used).
        top_k (`int`, *optional*):
            Use only the `top_k` highest scores of each query (and ask a pipeline for that many).
        committed_digest (`str` or `dict`, *optional*):
            The query set the owner committed to: a model card's `queries` block (its `digest` and `ordered_digest`),
            or a digest alone; defaults to the one recorded in the key by [`~WatermarkKey.commit_queries`]. The
            result says whether `dataset` is it. Under `max_queries`, a test that sent only the first queries is on
            the committed set only in the committed order (see `hf_ingrain.data.query_set`), which a digest alone lacks.
        processor (*optional*):
            The model's image processor or tokenizer, for a data set of raw images or texts.
        max_queries (`int`, *optional*):
            Label-only protocols: the most queries sent to the suspect (each rung of a ladder is one).
        ladder (`str`, *optional*, defaults to `"occlusion"`):
            `"ingrain_labels"`: the degradation, one of `hf_ingrain.verification.LADDERS`.
        **columns:
            `image_column`, `text_column`, `label_column`, `max_length`: the raw data's columns (found by name when
            not given) and the padded text length (see [`~hf_ingrain.data.prepare_dataset`]).

    Returns:
        [`VerificationResult`]: repeated queries are dropped before counting (`num_duplicates`), and so are
        near-duplicates (`num_near_duplicates`, see `hf_ingrain.data.near_duplicates`); `query_digest` names the set
        read.

    Example:

    ```python
    >>> from hf_ingrain import verify
    >>> result = verify(model, key, splits["test"])
    >>> result.verified, result.p_value
    (True, 3.3e-10)
    >>> from transformers import pipeline
    >>> verify(pipeline("image-classification", model=model, image_processor=processor), key, splits["test"])
    ```
    """
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
    if not isinstance(key, WatermarkKey):
        if not callable(getattr(key, "verify", None)):
            raise ValueError(
                f"`key` must be a WatermarkKey or a key from hf_ingrain.watermarks, got {type(key).__name__}."
            )
        return key.verify(model, alpha=alpha, batch_size=batch_size, scores=scores, top_k=top_k)
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")
    if protocol not in ("ingrain_scores", "carriers") and key.num_labels == 2:
        raise ValueError(
            f"A two-class key: the {protocol!r} protocol compares runner-up classes, and with two classes the "
            "runner-up is always the other one. Use protocol='ingrain_scores' (it reads both classes' scores)."
        )
    if protocol in LABEL_PROTOCOLS and key.modality != "image":
        raise ValueError(f"The label-only protocols degrade images; this key is for {key.modality} models.")
    restrict_scores(torch.zeros(1, 3), scores, top_k)  # checks `scores` and `top_k` before any query
    model = resolve_model(model)
    check_model_modality(model, key)
    if dataset is not None:
        dataset = prepare_dataset(dataset, key, processor, **columns)
    if protocol == "carriers":
        return _verify_carriers(model, key, alpha, batch_size, scores, top_k)
    # the test run, as a key commits to it (see hf_ingrain.data.committed_test)
    test = committed_test(protocol, alpha, max_queries if protocol in LABEL_PROTOCOLS else None, ladder)
    if protocol in LABEL_PROTOCOLS:
        return _verify_labels_only(model, key, dataset, test, batch_size, committed_digest)
    if protocol == "ingrain_scores":
        return _verify_scores(model, key, dataset, test, batch_size, show_progress, scores, top_k, committed_digest)
    statistics = ingrain_statistics(model, key, dataset, batch_size, show_progress, scores, top_k)
    details = {
        "null_rate_terms": statistics["null_rate_terms"],
        "scores": statistics["scores"],
        "labelled": statistics["labels"] is not None,
    }
    if statistics["labels"] is not None:
        details["accuracy"] = (statistics["top"] == statistics["labels"]).float().mean().item()
    agreements = statistics["runner_up"] == statistics["ingrainer_choice"]
    return _ingrain_result(agreements, statistics["null_rate"], statistics["reference_agreements"], test, details,
                           key, statistics["query_set"], committed_digest)


def _ingrain_result(agreements, null_rate, reference_agreements, test, details, key, query_set, committed_digest,
                    num_used=None) -> VerificationResult:
    """The verdict of an ingrain protocol (`hf_ingrain.verification.statistics.ingrain_p_value`), the query set's
    digest and whether the set and the `test` are the committed ones; `num_used`: the distinct queries sent, when a
    budget sent only the first of them (see `hf_ingrain.data.query_set`)."""
    alpha, protocol = test["alpha"], test["protocol"]
    count, num_queries = int(agreements.sum()), len(agreements)
    p_value, p_binomial, key_draw = ingrain_p_value(count, num_queries, null_rate, reference_agreements)
    if key_draw is None:  # nothing compared (a label-only budget that met no error)
        key_draw = {"num_references": len(getattr(key, "reference_ingrainers", []))}
    elif "p_value" not in key_draw:
        logger.warning(
            "This key has no reference ingrainers, so only the binomial test runs; it treats the queries as "
            "independent and overstates the evidence at large query counts (see hf_ingrain.verification.statistics). "
            "Train the key with `num_reference_keys` > 1."
        )
    result = VerificationResult(
        verified=p_value <= alpha, p_value=p_value, agreement=count / num_queries if num_queries else math.nan,
        null_rate=null_rate, num_queries=num_queries, num_agreements=count, alpha=alpha, protocol=protocol,
        details={**details, "p_value_binomial": p_binomial, "key_draw": key_draw},
        query_digest=query_set.digest, num_duplicates=query_set.num_duplicates,
        num_near_duplicates=query_set.num_near_duplicates,
    )
    return _with_commitment(result, key, query_set, test, committed_digest, num_used)


def _with_commitment(result, key, query_set, test, committed_digest, num_used=None) -> VerificationResult:
    """`result`, with whether its query set and its test are the committed ones."""
    committed = committed_set(committed_digest, key)
    result.committed_queries = is_committed(query_set, committed, num_used)
    differences = test_differences(read_committed_test(committed), test)
    result.committed_test = None if differences is None else not differences
    if differences:
        result.details["test_differences"] = differences
    return result


def _verify_scores(model, key, dataset, test, batch_size, show_progress, scores, top_k, committed_digest):
    """The `"ingrain_scores"` protocol: the correlation of the suspect's scores with the key's own part
    ([`~hf_ingrain.verification.statistics.score_correlations`]), judged by the key-draw test alone."""
    if key.ingrainer is not None and len(key.reference_ingrainers) < 2:
        raise ValueError(
            f"The 'ingrain_scores' protocol compares the key with its reference ingrainers, and this key has "
            f"{len(key.reference_ingrainers)}: train it with `num_reference_keys` >= 2 (or `extend_references`), "
            "or use protocol='ingrain'."
        )
    query_set, dataset = _read_benign_queries(key, dataset, "The 'ingrain_scores' protocol")
    columns = None if isinstance(model, torch.nn.Module) else [key.input_name, "attention_mask"]
    suspect, labels = collect_scores(model, dataset, columns, batch_size, show_progress, key.num_labels, top_k)
    _check_num_labels(suspect, key)
    suspect, kind = restrict_scores(suspect, scores, top_k)
    if kind not in ("logits", "probabilities"):
        raise ValueError(
            f"The 'ingrain_scores' protocol reads every class's score, but the suspect exposes only {kind} "
            "(its top class or its top few). Use protocol='ingrain' (two highest scores) or 'ingrain_labels'."
        )
    ingrainer_scores, reference_scores = remembered_scores(key, dataset, batch_size, query_set.ordered_digest)
    correlations = score_correlations(suspect, ingrainer_scores, reference_scores, kind == "probabilities")
    num_queries = len(suspect)
    p_value, key_draw = score_p_value(correlations, num_queries)
    details = {"scores": kind, "labelled": labels is not None, "statistic": "correlation", "key_draw": key_draw}
    if labels is not None:
        details["accuracy"] = (suspect.argmax(-1) == labels).float().mean().item()
    result = VerificationResult(
        verified=p_value <= test["alpha"], p_value=p_value, agreement=correlations[0], null_rate=key_draw["mean"],
        num_queries=num_queries, num_agreements=0, alpha=test["alpha"], protocol="ingrain_scores", details=details,
        query_digest=query_set.digest, num_duplicates=query_set.num_duplicates,
        num_near_duplicates=query_set.num_near_duplicates,
    )
    return _with_commitment(result, key, query_set, test, committed_digest)


def _verify_labels_only(model, key, dataset, test, batch_size, committed_digest):
    from .label_only import label_only_queries

    protocol, max_queries, ladder = test["protocol"], test["max_queries"], test["ladder"] or "occlusion"
    query_set, dataset = _read_benign_queries(key, dataset, f"The {protocol!r} protocol")
    routes = ("ladder", "errors") if protocol == "ingrain_labels" else ("errors",)
    if routes == ("errors",) and "labels" not in dataset.column_names:
        raise ValueError(
            "The 'ingrain_errors' protocol compares the suspect's wrong labels with the key: the queries need a "
            "`labels` column."
        )
    queries = label_only_queries(model, key, dataset, routes, ladder, max_queries=max_queries, batch_size=batch_size)
    details = {name: queries[name] for name in ("null_rate_terms", "queries_sent", "inputs_used", "unanswered")}
    details.update(
        ladder=ladder if "ladder" in routes else None, scores="labels",
        compared_by_route={"ladder": int((queries["route"] == 0).sum()), "errors": int((queries["route"] == 1).sum())},
    )
    agreements = queries["estimate"] == queries["choice"]
    return _ingrain_result(agreements, queries["null_rate"], queries["reference_agreements"], test, details, key,
                           query_set, committed_digest, queries["inputs_used"])


def ingrain_statistics(
    model, key, dataset, batch_size: int = 256, show_progress: bool = False, scores="auto", top_k=None
):
    r"""
    The per-query quantities of the ingrain protocol: what [`verify`] counts, for your own analysis or the
    `ingrain_watermark` metric (`predictions=runner_up, references=ingrainer_choice, null_rate=null_rate`).

    Args: as for [`verify`].

    Returns:
        `dict`: `top` and `runner_up` (the suspect's), `ingrainer_choice`, `reference_agreements` (the suspect's
        agreement with each reference ingrainer of the key), `labels` (or `None`), `null_rate`, `null_rate_terms`,
        `scores` (what the suspect exposed) and `query_set` (the queries read, see `hf_ingrain.data.query_set`).
    """
    query_set, dataset = _read_benign_queries(key, dataset, "The ingrain protocol")
    columns = None if isinstance(model, torch.nn.Module) else [key.input_name, "attention_mask"]  # a model reads its own
    suspect, labels = collect_scores(model, dataset, columns, batch_size, show_progress, key.num_labels, top_k)
    _check_num_labels(suspect, key)
    suspect, kind = restrict_scores(suspect, scores, top_k)
    if kind == "labels":
        raise ValueError(
            "The ingrain protocol needs the suspect's two highest scores per query (logits, probabilities or top-k "
            "with k >= 2), but it exposes only its top class. Use protocol='carriers' for a label-only suspect."
        )
    ingrainer_scores, reference_scores = remembered_scores(key, dataset, batch_size, query_set.ordered_digest)
    top = suspect.argmax(-1)
    suspect_runner_up = runner_up(suspect, top)
    choice, reference_agreements = key_agreements(suspect_runner_up, top, ingrainer_scores, reference_scores)
    null_rate, terms = ingrain_null_rate(ingrainer_scores, top, labels)
    return {
        "top": top,
        "runner_up": suspect_runner_up,
        "ingrainer_choice": choice,
        "reference_agreements": reference_agreements,
        "labels": labels,
        "null_rate": null_rate,
        "null_rate_terms": terms,
        "scores": kind,
        "query_set": query_set,
    }


def ingrain_queries(*args, **kwargs):
    """Deprecated name of [`ingrain_statistics`] (it returns the protocol's statistics, not queries)."""
    warnings.warn("`ingrain_queries` is deprecated: use `ingrain_statistics`.", FutureWarning, stacklevel=2)
    return ingrain_statistics(*args, **kwargs)


def _read_benign_queries(key, dataset, what: str):
    """The benign queries of an ingrain protocol, read once before any is sent (bad inputs fail now, duplicates are
    dropped): `(query_set, deduplicated dataset)`. `what` names the protocol in the errors."""
    if dataset is None:
        raise ValueError(f"{what} needs benign queries: pass `dataset=` (e.g. your test split).")
    if key.ingrainer is None:
        raise ValueError("The key has no trained ingrainer: call `key.train_ingrainer(...)` first.")
    query_set = read_queries(key, dataset)
    return query_set, query_set.deduplicated(dataset)


def _check_num_labels(scores, key):
    if scores.shape[-1] != key.num_labels:
        raise ValueError(
            f"The model returns {scores.shape[-1]} scores per query but the key has {key.num_labels} labels."
        )
    unanswered = ~torch.isfinite(scores).any(-1)
    if unanswered.any():
        raise ValueError(
            f"The suspect returned no finite score for {int(unanswered.sum())} of {len(scores)} queries (the first is "
            f"query {int(unanswered.nonzero()[0])}): NaN or infinite outputs are not an answer. Every query needs at "
            "least its top class."
        )


def _verify_carriers(model, key, alpha, batch_size, scores="auto", top_k=None):
    from datasets import Dataset

    carriers = Dataset.from_dict({k: v.numpy() for k, v in carrier_batch(key).items()}).with_format("torch")
    columns = None if isinstance(model, torch.nn.Module) else [key.input_name]
    suspect, _ = collect_scores(model, carriers, columns, batch_size, num_labels=key.num_labels, top_k=top_k)
    _check_num_labels(suspect, key)
    suspect, kind = restrict_scores(suspect, scores, top_k)
    answered = torch.isfinite(suspect).any(-1)
    hits = (suspect.argmax(-1) == key.carrier_labels) & answered
    return VerificationResult.from_counts(
        int(hits.sum()), len(hits), 1.0 / key.num_labels, alpha, "carriers", {"scores": kind}
    )
