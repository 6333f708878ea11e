"""Null models, measured: how often models **not** derived from a key agree with it (the empirical check of the
null rate that [`verify`] computes from the key and the data)."""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from .protocols import DEFAULT_ALPHA, verify
from .statistics import ingrain_null_rate, ingrain_p_value, key_agreements, runner_up

logger = logging.getLogger(__name__)


@dataclass
class NullCalibration:
    r"""
    Agreement of models not derived from the key, from [`calibrate_null`].

    Args:
        results (`dict[str, VerificationResult]`): the verification of each null model, by name.
    """

    results: dict

    @property
    def agreements(self) -> dict:
        return {name: r.agreement for name, r in self.results.items()}

    @property
    def p_values(self) -> dict:
        return {name: r.p_value for name, r in self.results.items()}

    @property
    def max_agreement(self) -> float:
        return max(self.agreements.values())

    @property
    def max_excess(self) -> float:
        """Largest `agreement - null_rate`: above 0, some independent model beat the bound."""
        return max(r.agreement - r.null_rate for r in self.results.values())

    @property
    def any_verified(self) -> bool:
        return any(r.verified for r in self.results.values())

    def to_dict(self) -> dict:
        return {
            "agreements": self.agreements,
            "p_values": self.p_values,
            "max_agreement": self.max_agreement,
            "max_excess": self.max_excess,
            "any_verified": self.any_verified,
            "null_rates": {name: r.null_rate for name, r in self.results.items()},
        }

    def __str__(self) -> str:
        lines = [f"{'model':<24} {'agreement':>9} {'null rate':>9} {'p-value':>9}  verified"]
        for name, r in self.results.items():
            lines.append(f"{name:<24} {r.agreement:>9.3f} {r.null_rate:>9.3f} {r.p_value:>9.3g}  {r.verified}")
        return "\n".join(lines)


def calibrate_null(
    key, dataset, null_models, protocol: str = "ingrain", alpha: float = DEFAULT_ALPHA, **verify_kwargs
):
    r"""
    Measures how often models **not** derived from `key` agree with it: the empirical check of the null rate.

    Train a few models on the task without the key (other seeds, data, architectures) and pass them here. None
    should verify, and their agreement should stay at or below the null rate; a model that beats the bound
    (`max_excess > 0`) is logged as a warning, since it means the bound is not conservative for this key and data.

    Args:
        key ([`WatermarkKey`]): the owner's key.
        dataset (`datasets.Dataset`): the queries, as for [`verify`].
        null_models (`list` or `dict[str, ...]`): the independent models (anything [`verify`] accepts).
        protocol (`str`, *optional*, defaults to `"ingrain"`): the protocol to calibrate.
        alpha (`float`, *optional*, defaults to 1e-6): the significance level.
        **verify_kwargs: passed to [`verify`] (`scores`, `top_k`, `batch_size`).

    Returns:
        [`NullCalibration`]: per-model agreements and p-values, `max_agreement`, `max_excess`, `any_verified`.

    Example:

    ```python
    >>> from hf_ingrain import calibrate_null
    >>> calibration = calibrate_null(key, splits["test"], [independent_a, independent_b])
    >>> calibration.any_verified, calibration.max_agreement
    (False, 0.131)
    ```
    """
    named = (
        dict(null_models) if isinstance(null_models, Mapping) else {f"null_{i}": m for i, m in enumerate(null_models)}
    )
    if not named:
        raise ValueError("`null_models` is empty: pass models trained without the key.")
    results = {name: verify(m, key, dataset, protocol=protocol, alpha=alpha, **verify_kwargs) for name, m in named.items()}
    calibration = NullCalibration(results)
    if calibration.max_excess > 0:
        logger.warning(
            "An independent model agrees above the null rate (excess %.3f): the bound is not conservative here.",
            calibration.max_excess,
        )
    return calibration


def false_positive_table(
    model_scores: Mapping, key_scores: Mapping, labels, query_counts, alpha: float = DEFAULT_ALPHA, derived=(),
    reference_scores: Mapping | None = None,
) -> dict:
    r"""
    The ingrain test of every model against every key on the first `n` queries, for each `n` of `query_counts`,
    from score matrices computed once: the false-positive measurement of models **not** derived from the keys.

    The statistics are exactly [`verify`]'s (runner-up agreement, [`ingrain_null_rate`], the binomial tail), so a
    pair verifies here if and only if `verify` would say so on the same queries.

    Args:
        model_scores (`dict[str, torch.Tensor]`): each suspect's scores `(num_queries, K)` on the query pool.
        key_scores (`dict[str, torch.Tensor]`): each key's ingrainer logits on the same pool.
        labels (`torch.Tensor`, *optional*): the pool's true labels.
        query_counts (`list[int]`): how many of the first queries each test uses.
        alpha (`float`, *optional*, defaults to 1e-6): the significance level.
        derived (`iterable[tuple[str, str]]`, *optional*): `(model, key)` pairs where the model IS derived from the
            key (trained with it): reported apart, as the test's power, never as false positives.
        reference_scores (`dict[str, list[torch.Tensor]]`, *optional*): each key's reference ingrainers' logits on
            the pool, for the key-draw test (`p_value` is then the larger of the two tests', as in `verify`).

    Returns:
        `dict`: `pairs` (one row per model, key and query count) and `summary` (per query count: independent pairs,
        false claims, largest agreement minus null rate, smallest p-value; and the derived pairs' verdicts).
    """
    derived = set(map(tuple, derived))
    reference_scores = reference_scores or {}
    rows = []
    for count in query_counts:
        for key_name, ingrainer in key_scores.items():
            ingrainer = ingrainer[:count]
            references = [reference[:count] for reference in reference_scores.get(key_name, [])]
            for model_name, scores in model_scores.items():
                scores = scores[:count]
                top = scores.argmax(-1)
                null_rate, _ = ingrain_null_rate(ingrainer, top, None if labels is None else labels[:count])
                suspect_runner_up = runner_up(scores, top)
                choice, reference_agreements = key_agreements(suspect_runner_up, top, ingrainer, references)
                agreements = int((suspect_runner_up == choice).sum())
                p_value, p_binomial, key_draw = ingrain_p_value(agreements, len(top), null_rate, reference_agreements)
                rows.append({
                    "num_queries": len(top), "key": key_name, "model": model_name,
                    "derived": (model_name, key_name) in derived, "agreement": agreements / len(top),
                    "null_rate": null_rate, "p_value_binomial": p_binomial,
                    "p_value_key_draw": (key_draw or {}).get("p_value"), "p_value": p_value,
                    "verified": p_value <= alpha,
                })
    summary = []
    for count in sorted({row["num_queries"] for row in rows}):
        independent = [r for r in rows if r["num_queries"] == count and not r["derived"]]
        derived_rows = [r for r in rows if r["num_queries"] == count and r["derived"]]
        summary.append({
            "num_queries": count,
            "independent_pairs": len(independent),
            "false_claims": sum(r["verified"] for r in independent),
            "false_claims_binomial_only": sum(r["p_value_binomial"] <= alpha for r in independent),
            "max_excess": max(r["agreement"] - r["null_rate"] for r in independent),
            "min_p_value": min(r["p_value"] for r in independent),
            "derived_pairs": len(derived_rows),
            "derived_verified": sum(r["verified"] for r in derived_rows),
        })
    return {"alpha": alpha, "pairs": rows, "summary": summary}
