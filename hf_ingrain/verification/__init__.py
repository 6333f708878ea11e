r"""
What judges: does a suspect carry the owner's watermark, and how sure can anyone be?

- `protocols`: [`verify`], the one entry of every test (the ingrain runner-up test, the scores protocol, the
  label-only protocols, the carriers), and [`ingrain_statistics`], the per-query quantities it counts.
- `statistics`: every p-value, once: the null rate and its binomial test, the key-draw test, and the ingrain statistic
  they are computed from (the runner-up of a score matrix, the agreements with the key and its references; the scores
  protocol's correlations and their test, [`score_correlations`] and [`score_p_value`]).
- `label_only`: what a suspect's top-1 answers reveal (the degradation ladder, the error route), and [`hardest_first`],
  the committed order of their queries.
- `calibration`: null models measured ([`calibrate_null`]) and the false-positive table.
- `result`: [`VerificationResult`] and its one printout ([`summary`]).

The benign query set a verification reads (its digest, the committed set) is `hf_ingrain.data.query_set`: the key
commits to it, so it sits below the keys.
"""

from .calibration import NullCalibration, calibrate_null, false_positive_table
from .label_only import LADDERS, hardest_first, label_only_queries
from .protocols import DEFAULT_ALPHA, LABEL_PROTOCOLS, PROTOCOLS, ingrain_queries, ingrain_statistics, verify
from .result import VerificationResult, summary
from .statistics import (
    binomial_p_value,
    format_p_value,
    ingrain_null_rate,
    key_draw_p_value,
    runner_up,
    score_correlations,
    score_p_value,
)

__all__ = [
    "DEFAULT_ALPHA",
    "LABEL_PROTOCOLS",
    "LADDERS",
    "NullCalibration",
    "PROTOCOLS",
    "VerificationResult",
    "binomial_p_value",
    "calibrate_null",
    "false_positive_table",
    "format_p_value",
    "hardest_first",
    "ingrain_null_rate",
    "ingrain_queries",
    "ingrain_statistics",
    "key_draw_p_value",
    "label_only_queries",
    "runner_up",
    "score_correlations",
    "score_p_value",
    "summary",
    "verify",
]
