"""Null models, measured: how often models **not** derived from a key agree with it (the empirical check of the
null rate that [`verify`] computes from the key and the data)."""

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from .verification import DEFAULT_ALPHA, verify

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
    results = {name: verify(m, key, dataset, protocol, alpha, **verify_kwargs) for name, m in named.items()}
    calibration = NullCalibration(results)
    if calibration.max_excess > 0:
        logger.warning(
            "An independent model agrees above the null rate (excess %.3f): the bound is not conservative here.",
            calibration.max_excess,
        )
    return calibration
