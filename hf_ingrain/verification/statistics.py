r"""
The statistics of the ingrain protocol: the null rate with its binomial test, and the key-draw test.

Notation as in [`hf_ingrain.verification`]: on `n` benign queries, the suspect's top class `a(x)` and runner-up
`r(x)`, the ingrainer's choice `s(x)` (its best class other than `a(x)`), `K` classes; the statistic is the number
`k` of queries where `r(x) = s(x)`, its share the agreement.

## The null rate and why it holds
A model not derived from the key cannot know `s`, but it can still agree with it by accident, and it does so
above `1 / (K - 1)` whenever the ingrainer's choices are uneven: if the ingrainer puts 40% of benign images on one
class, a model whose runner-up is always that class agrees on 40% of them. More generally any model whose runner-up
is a function of a coarse property of the input (its top class, or its true class: "a 4 is most like a 9") agrees
with `s` at most as often as the best such function does. The null rate is the largest of three terms, computed
from the key's ingrainer, the queries and the suspect's top classes alone (no runner-up of the suspect enters it):

    null_rate = max( 1 / (K - 1),                                  "uniform"
                     Σ_a P̂(a) · max_c P̂(s = c | a),               "by_top_class":  a = the suspect's top class
                     Σ_y P̂(y) · max_c P̂(s_y = c | y) )             "by_label":      y = the true label, s_y = the
                                                                    ingrainer's best class other than y (labelled data)

- `uniform` is the agreement of a runner-up drawn at random among the `K - 1` classes.
- `by_top_class` is, on these very queries, the agreement of the best rule "runner-up = a fixed class for each top
  class". It covers degenerate models, e.g. one whose runner-up is constant or forced to a fixed class: such a
  model agrees at most this often, so its p-value stays near 1/2 or above.
- `by_label` is the same for rules "runner-up = a fixed class for each true class": models whose errors follow the
  class-level similarities of the data ("a 4 is most like a 9"), which the ingrainer, trained on the same data, may
  share. It needs labels; with unlabelled queries the test keeps the other two terms (for an accurate suspect, top
  class and true class mostly coincide, so `by_top_class` then stands in for it).

Honest caveats:
- A rule that uses both the top class and the label ("runner-up = the true label when the model errs") is bounded
  by `by_label` on the queries the suspect classifies correctly, and can exceed the bound by at most its error rate.
- The terms bound rules that depend on one coarse property of the input. They do not bound a model whose runner-up
  tracks the ingrainer's choices *within* a class (two CNNs trained on the same digits may share instance-level
  similarities). [`WatermarkKey.train_ingrainer`] spreads the ingrainer's choices within each class, and nothing
  makes an independent model follow that spread; this part of the argument is empirical, not a proof. It is
  measured by [`calibrate_null`] (run it on models you trained yourself without the key) and in the tests: on the
  embedded data, ten independently trained models agree on 0.09 to 0.14 of the queries against a bound of 0.18,
  and models built to follow the best coarse rule sit at the bound with p-values above 0.5.
- The binomial tail treats the queries as independent given the model. They are not: an ingrainer's choices are
  nearly constant over regions of the input space (measured on full MNIST: two keys' choices agree on 0.05 to 0.20 of
  the test images, mean 0.11, standard deviation 0.037 over 45 pairs of keys, as if decided by about 70 independent
  regions), so a model that shares a few regions with the key agrees far above the null rate on every query of
  them. At 1,000 queries the null rate's terms, measured on few queries, leave enough slack; at 10,000 and 30,000
  queries a model ingrained with *another* key verified against ours (p = 2e-21 and 2e-102, see
  `docs/false_positives/`). The key-draw test below closes that gap; duplicated queries are dropped before
  counting (`hf_ingrain.data.query_set`).
- The terms are measured on the queries themselves, so they are exact for the rules they describe on these
  queries, not estimates with their own error.
- A pipeline receives images as 8-bit PIL images, so its inputs are the queries rounded to 1/255.

## The key-draw test
Under the null hypothesis the suspect was made without the key, so the key is just one draw of the procedure that
made it, independent of the suspect: the suspect's agreement with the key is distributed like its agreement with any
other key that procedure could have drawn. [`WatermarkKey.train_ingrainer`] trains `R` reference ingrainers by the
same procedure, from seeds that the key's seed fixes (and that its commitment covers, so they cannot be chosen after
seeing a suspect). On the same queries, the suspect's agreements with the references give a mean `m` and a standard
deviation `sd` (at least the binomial noise of one agreement, `sqrt(m (1 - m) / n)`); the p-value of the key's
agreement `a` is the tail of Student's t with `R - 1` degrees of freedom at `(a - m) / (sd · sqrt(1 + 1 / R))`, the
prediction interval of a new draw from a normal sample. The agreement with a key is an average over many regions,
close to normal (the 45 pairs above: Shapiro-Wilk p = 0.58). The test adapts to the suspect: an independent model
agrees with every key alike (sd about 0.013 on full MNIST), a model ingrained with some key agrees with other keys as
keys agree with each other (sd about 0.038), so its agreement with our key must stand out of that spread. With
`R = 16` a verdict at alpha = 1e-6 needs `a` about 7.7 `sd` above `m`. Measured on full MNIST
(`docs/false_positives/`, 5 keys x 25 models that never saw them, 2026-12-02): no false claim at 1,000, 10,000
or 30,000 queries, the smallest key-draw p-value 0.016; the five models ingrained with a key verified against it at
key-draw p = 2e-8 to 3e-16 (`docs/false_positives/README.md`).

`verify()` reports `p_value = max(binomial p-value, key-draw p-value)`: both tests must pass. A key without
reference ingrainers (keys made by 0.1, or with `num_reference_keys=0`) has the binomial test only, and a warning says
so; at large query counts its p-value overstates the evidence.

"""

import math

import torch
from scipy.stats import binom
from scipy.stats import t as student_t


def runner_up(logits: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """The highest-scoring label other than `exclude` (default: the top-1 label), per row."""
    if exclude is None:
        exclude = logits.argmax(-1)
    masked = logits.float().scatter(-1, exclude.unsqueeze(-1), -math.inf)
    return masked.argmax(-1)


def format_p_value(p_value: float, relation: bool = True, spec: str = ".3g") -> str:
    """`"= 2.3e-45"`, or `"< 1e-300"` where the binomial tail underflows to 0 (it is never exactly 0).

    With `relation=False`, a table cell: `"2.3e-45"`, or `"< 1e-300"`. `spec` is the format of the number.
    """
    if p_value == 0.0:
        return "< 1e-300"
    text = format(p_value, spec)
    return f"= {text}" if relation else text


def binomial_p_value(num_agreements: int, num_queries: int, null_rate: float) -> float:
    """One-sided `P[Binomial(num_queries, null_rate) >= num_agreements]`."""
    if num_queries == 0:
        return 1.0
    return float(binom.sf(num_agreements - 1, num_queries, min(max(null_rate, 0.0), 1.0)))


def key_draw_p_value(agreement: float, reference_agreements, num_queries: int,
                     floor: float | None = None) -> tuple[float | None, dict]:
    r"""
    The key-draw test (see the module docstring): how far the key's agreement stands out of the suspect's agreements
    with reference keys drawn by the same procedure.

    Args:
        agreement (`float`): the suspect's agreement with the key.
        reference_agreements (`list[float]`): its agreements with the reference keys, on the same queries.
        num_queries (`int`): the number of queries (the floor of the spread is one agreement's binomial noise).
        floor (`float`, *optional*): another floor of the spread, for a statistic that is not a share of queries
            (the scores protocol's correlation, [`score_correlations`]).

    Returns:
        `tuple[float | None, dict]`: the p-value (`None` with fewer than 2 references) and the test's numbers.
    """
    references = [float(value) for value in reference_agreements]
    if len(references) < 2:
        return None, {"num_references": len(references)}
    count = len(references)
    mean = sum(references) / count
    spread = math.sqrt(sum((value - mean) ** 2 for value in references) / (count - 1))
    # the floor is one agreement's binomial noise, at the references' mean smoothed by one agreement and one miss
    # ((k + 1) / (n + 2)): references that all agree on none (or all) of the queries say the rate is small, not 0,
    # and a floor at 0 would make any agreement above it a verdict (measured: 2 references at 0 on 5 queries put a
    # copy at p = 1e-7)
    queries = max(num_queries, 1)
    smoothed = (mean * queries + 1) / (queries + 2)
    spread = max(spread, math.sqrt(smoothed * (1 - smoothed) / queries) if floor is None else floor)
    statistic = (agreement - mean) / (spread * math.sqrt(1 + 1 / count))
    p_value = float(student_t.sf(statistic, count - 1))
    return p_value, {"num_references": count, "mean": mean, "sd": spread, "t": statistic, "p_value": p_value}


def _best_rule_agreement(choices: torch.Tensor, groups: torch.Tensor) -> float:
    """Agreement of the best rule mapping each group to one constant class, with `choices`."""
    best = 0
    for group in groups.unique():
        best += int(torch.bincount(choices[groups == group]).max())
    return best / max(len(choices), 1)


def ingrain_null_rate(ingrainer_logits: torch.Tensor, model_top: torch.Tensor, labels: torch.Tensor | None = None):
    r"""
    The agreement bound for models not derived from the key (see the module docstring).

    Args:
        ingrainer_logits (`torch.Tensor` of shape `(n, K)`): the ingrainer's logits on the queries.
        model_top (`torch.Tensor` of shape `(n,)`): the suspect's top class on each query.
        labels (`torch.Tensor` of shape `(n,)`, *optional*): true labels of the queries.

    Returns:
        `tuple[float, dict]`: the null rate and its terms.
    """
    num_labels = ingrainer_logits.shape[-1]
    terms = {"uniform": 1.0 / (num_labels - 1)}
    terms["by_top_class"] = _best_rule_agreement(runner_up(ingrainer_logits, model_top), model_top)
    if labels is not None:
        terms["by_label"] = _best_rule_agreement(runner_up(ingrainer_logits, labels), labels)
    return max(terms.values()), terms


def key_agreements(estimate: torch.Tensor, excluded: torch.Tensor, ingrainer_scores: torch.Tensor, reference_scores=()):
    r"""
    The ingrain statistic, computed here once for every protocol: the key's choice on each query and the suspect's
    agreement with each reference ingrainer's choice.

    Args:
        estimate (`torch.Tensor` of shape `(n,)`): the class the suspect reveals per query: its runner-up (scores),
            the first other label along a ladder, or its wrong label (labels only).
        excluded (`torch.Tensor` of shape `(n,)`): the class the choice leaves out: the suspect's top class (or clean
            label), or the true label on the error route.
        ingrainer_scores (`torch.Tensor` of shape `(n, K)`): the key's ingrainer's logits on the queries.
        reference_scores (`torch.Tensor` of shape `(R, n, K)` or a list of `(n, K)`): the reference ingrainers'.

    Returns:
        `tuple[torch.Tensor, list[float]]`: the key's choice per query (the suspect agrees where `estimate` equals
        it), and the suspect's agreement with each reference.
    """
    choice = runner_up(ingrainer_scores, excluded)
    references = [(runner_up(scores, excluded) == estimate).float().mean().item() for scores in reference_scores]
    return choice, references


def ingrain_p_value(num_agreements: int, num_queries: int, null_rate: float, reference_agreements) -> tuple:
    r"""
    The p-value of an ingrain verdict: the larger of the binomial test against the null rate and the key-draw test
    (both must pass; see the module docstring).

    Returns:
        `tuple[float, float, dict | None]`: the p-value, the binomial p-value, and the key-draw test's numbers
        (`None` when nothing was compared; `{"num_references": R}` alone with fewer than 2 references).
    """
    p_binomial = binomial_p_value(num_agreements, num_queries, null_rate)
    if not num_queries:  # nothing compared: no evidence
        return p_binomial, p_binomial, None
    p_key_draw, key_draw = key_draw_p_value(num_agreements / num_queries, reference_agreements, num_queries)
    return (p_binomial if p_key_draw is None else max(p_binomial, p_key_draw)), p_binomial, key_draw


def score_correlations(suspect: torch.Tensor, ingrainer_scores: torch.Tensor, reference_scores,
                       probabilities: bool = False) -> list[float]:
    r"""
    The statistic of the `"ingrain_scores"` protocol: how much the suspect's scores follow what sets each ingrainer
    of the key apart from the others.

    Each score row is made a centred log-probability vector (a softmax's log, minus its mean over the classes; for
    logits that is the logits minus their mean). Each ingrainer's *own part* is its centred scores minus the mean of
    every other ingrainer's (the key's and the references'): the task, which they all learned, cancels, and what is
    left is what its seed alone made. The statistic of ingrainer `j` is the Pearson correlation, over every query
    and class, of the suspect's centred scores with ingrainer `j`'s own part. A model trained with the key (or
    distilled from one) follows the key's own part; under the null hypothesis the key is one draw of the procedure
    that drew the references and its own part is defined the same way, so the key's correlation is distributed like
    each reference's: the key-draw test ([`key_draw_p_value`]) compares them.

    Args:
        suspect (`torch.Tensor` of shape `(n, K)`): the suspect's logits (or probabilities, with `probabilities`).
        ingrainer_scores (`torch.Tensor` of shape `(n, K)`): the key's ingrainer's logits.
        reference_scores (`torch.Tensor` of shape `(R, n, K)` or a list of `(n, K)`): the references', `R >= 2`.
        probabilities (`bool`, *optional*): `suspect` holds probabilities (their log is taken, at least 1e-12).

    Returns:
        `list[float]`: the correlation with the key's own part, then with each reference's.
    """
    suspect = suspect.float().clamp_min(1e-12).log() if probabilities else suspect.float()
    suspect = _centred(suspect)
    members = torch.stack([_centred(torch.log_softmax(scores.float(), -1))
                           for scores in [ingrainer_scores, *reference_scores]])
    others = (members.sum(0, keepdim=True) - members) / (len(members) - 1)
    own = (members - others).flatten(1)
    own = own - own.mean(1, keepdim=True)
    suspect = suspect.flatten() - suspect.mean()
    norms = own.norm(dim=1) * suspect.norm()
    return ((own @ suspect) / norms.clamp_min(1e-30)).tolist()


def _centred(scores: torch.Tensor) -> torch.Tensor:
    return scores - scores.mean(-1, keepdim=True)


def score_p_value(correlations, num_queries: int) -> tuple[float | None, dict]:
    r"""
    The verdict of the `"ingrain_scores"` protocol: the key-draw test ([`key_draw_p_value`]) of the key's correlation
    (`correlations[0]`, from [`score_correlations`]) against its references' (the rest), on `num_queries` queries.
    The spread's floor is a correlation's sd over `num_queries` independent queries, as if each query's K scores were
    one number (they are not independent of each other, so the true sd lies between `1 / sqrt(n K)` and this).
    """
    return key_draw_p_value(correlations[0], correlations[1:], num_queries, floor=1 / math.sqrt(num_queries))
