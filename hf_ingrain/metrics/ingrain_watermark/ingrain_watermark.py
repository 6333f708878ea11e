"""The ingrain watermark test as an `evaluate` metric: agreement, one-sided binomial p-value, verdict."""

import datasets
import evaluate

from hf_ingrain.verification import DEFAULT_ALPHA, binomial_p_value

_DESCRIPTION = """
Watermark verification for models trained with hf_ingrain (Ingrain, Yang et al. 2019,
https://huggingface.co/papers/1906.06046). On benign queries, the suspect's runner-up class (its best class other
than its top class) is compared with the ingrainer's choice (the ingrainer's best class other than the suspect's top
class). The agreement count is tested against a null rate with a one-sided binomial tail; the model is verified when
the p-value is at most alpha. The null rate must come from the key and the data (`hf_ingrain.verify(...).null_rate`
or `hf_ingrain.verification.ingrain_null_rate`): it is the agreement bound for models not derived from the key, and
the p-value is only as valid as it.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): the suspect's runner-up class per query. To pass per-query agreements instead, give
        them (0/1) as predictions and 1 as every reference.
    references (`list[int]`): the ingrainer's choice per query.
    null_rate (`float`): the agreement bound for models not derived from the key, in [0, 1].
    alpha (`float`, *optional*, defaults to 1e-6): the significance level: the largest probability of verifying a
        model not derived from the key.
Returns:
    agreement (`float`): share of agreeing queries.
    p_value (`float`): `P[Binomial(n, null_rate) >= agreements]`.
    verified (`bool`): `p_value <= alpha`.
    num_queries (`int`), num_agreements (`int`), null_rate (`float`), alpha (`float`).
Examples:
    >>> metric = evaluate.load(hf_ingrain.metrics.metric_path("ingrain_watermark"))
    >>> metric.compute(predictions=[3, 1, 4], references=[3, 1, 5], null_rate=0.2)["agreement"]
    0.6666666666666666
"""

_CITATION = """
@article{yang2019effectiveness,
  title={Effectiveness of Distillation Attack and Countermeasure on Neural Network Watermarking},
  author={Yang, Ziqi and Dang, Hung and Chang, Ee-Chien},
  journal={arXiv preprint arXiv:1906.06046},
  year={2019}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class IngrainWatermark(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://huggingface.co/papers/1906.06046"],
        )

    def _compute(self, predictions, references, null_rate=None, alpha=DEFAULT_ALPHA):
        if null_rate is None or not 0 <= null_rate <= 1:
            raise ValueError(
                f"`null_rate` must be given, in [0, 1], got {null_rate}. Take it from "
                "`hf_ingrain.verify(...).null_rate` "
                "or `hf_ingrain.verification.ingrain_null_rate`: it depends on the key and the queries."
            )
        if not 0 < alpha < 1:
            raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
        num_queries = len(predictions)
        num_agreements = sum(int(p == r) for p, r in zip(predictions, references, strict=True))
        p_value = binomial_p_value(num_agreements, num_queries, null_rate)
        return {
            "agreement": num_agreements / num_queries if num_queries else float("nan"),
            "p_value": p_value,
            "verified": bool(p_value <= alpha),
            "num_queries": num_queries,
            "num_agreements": num_agreements,
            "null_rate": float(null_rate),
            "alpha": float(alpha),
        }
