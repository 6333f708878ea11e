"""[`VerificationResult`], the outcome of every test of this package, and its one printout ([`summary`]): the one-line
verdict of `str(result)` and the full report that `hf-ingrain verify` prints."""

import math
from dataclasses import asdict, dataclass, field

from .statistics import binomial_p_value, format_p_value


@dataclass
class VerificationResult:
    r"""
    The outcome of [`verify`] (and of the baseline schemes' verify functions).

    Args:
        verified (`bool`): `p_value <= alpha`.
        p_value (`float`): one-sided binomial p-value of the agreement count under the null rate (the ingrain
            protocols: the larger of it and the key-draw test's; `"ingrain_scores"`: the key-draw test's alone).
        agreement (`float`): share of queries on which the suspect agrees with the key (`"ingrain_scores"`: the
            correlation of its scores with the key's own part).
        null_rate (`float`): the agreement bound for models not derived from the key (`"ingrain_scores"`: the mean
            correlation with the key's references).
        num_queries (`int`): number of queries used.
        num_agreements (`int`): number of agreeing queries (0 for `"ingrain_scores"`, which counts nothing).
        alpha (`float`): the significance level.
        protocol (`str`): `"ingrain"`, `"ingrain_scores"`, `"ingrain_labels"`, `"ingrain_errors"`, `"carriers"`, or a
            baseline's protocol (`"trigger_set"`, `"uchida"`).
        details (`dict`): protocol-specific extras (the terms of the null rate, accuracy on labelled data, ...).
        query_digest (`str`, *optional*): digest of the distinct benign queries counted (see `hf_ingrain.data.query_set`).
        num_duplicates (`int`): repeated queries dropped before counting.
        num_near_duplicates (`int`): near-duplicate queries dropped before counting (see
            `hf_ingrain.data.near_duplicates`).
        committed_queries (`bool`, *optional*): whether the queries are the set the owner committed to (in the key
            or the model card); `None` when no set was committed. A claim on other queries is weaker: the owner
            could have chosen them after seeing the suspect.
        committed_test (`bool`, *optional*): whether the test (protocol, alpha, query budget, ladder) is the one the
            owner committed to with the queries (see `hf_ingrain.data.committed_test`); `None` when none was
            committed. Where it is not, `details["test_differences"]` says how it differs.
    """

    verified: bool
    p_value: float
    agreement: float
    null_rate: float
    num_queries: int
    num_agreements: int
    alpha: float
    protocol: str
    details: dict = field(default_factory=dict)
    query_digest: str | None = None
    num_duplicates: int = 0
    num_near_duplicates: int = 0
    committed_queries: bool | None = None
    committed_test: bool | None = None

    @classmethod
    def from_counts(
        cls, num_agreements: int, num_queries: int, null_rate: float, alpha: float, protocol: str, details: dict
    ) -> "VerificationResult":
        """The result of `num_agreements` among `num_queries` against `null_rate`: the binomial p-value and verdict."""
        p_value = binomial_p_value(num_agreements, num_queries, null_rate)
        return cls(
            verified=p_value <= alpha,
            p_value=p_value,
            agreement=num_agreements / num_queries if num_queries else math.nan,
            null_rate=null_rate,
            num_queries=num_queries,
            num_agreements=num_agreements,
            alpha=alpha,
            protocol=protocol,
            details=details,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return summary(self.to_dict(), brief=True)

    def summary(self, **context) -> str:
        """The full report of this result (what `hf-ingrain verify` prints); `context` adds `model`, `data` and
        `key_commitment` lines."""
        return summary({**context, **self.to_dict()})


COMMITTED = {
    True: "the committed set",
    None: "no set was committed",
    False: "NOT the committed set, or under a budget not in its committed order",
}
COMMITMENT_MATCH = {True: "matches the key", False: "DOES NOT match the key", None: "absent from the model card"}


def _verdict_line(report: dict) -> str:
    verdict = "VERIFIED" if report["verified"] else "not verified"
    text = f"{verdict} ({report['protocol']}): no query compared, no evidence (alpha = {report['alpha']:g})"
    if report["num_queries"] and report["protocol"] == "ingrain_scores":
        text = (
            f"{verdict} ({report['protocol']}): correlation {report['agreement']:.3f} with the key on "
            f"{report['num_queries']} queries vs {report['null_rate']:.3f} with its references, "
            f"p {format_p_value(report['p_value'])} (alpha = {report['alpha']:g})"
        )
    elif report["num_queries"]:
        text = (
            f"{verdict} ({report['protocol']}): agreement {report['agreement']:.3f} on {report['num_queries']} queries "
            f"vs null rate {report['null_rate']:.3f}, p {format_p_value(report['p_value'])} (alpha = {report['alpha']:g})"
        )
    if report.get("committed_queries") is False:
        text += "; NOT the committed query set (or, under a query budget, not in its committed order)"
    if report.get("committed_test") is False:
        text += "; NOT the committed test"
    if report.get("num_duplicates"):
        text += f"; {report['num_duplicates']} repeated queries dropped"
    if report.get("num_near_duplicates"):
        text += f"; {report['num_near_duplicates']} near-duplicate queries dropped"
    return text


def _provenance_lines(report: dict) -> list[str]:
    """Where a Hub suspect came from, and the claim's provenance (a [`~hf_ingrain.hub.HubVerificationResult`])."""
    lines = []
    if report.get("commit_sha"):
        lines.append(f"  model         {report.get('repo_id') or report.get('model')} @ {report.get('revision')}, "
                     f"commit {report['commit_sha']}")
        lines.append(f"  published     commitment {COMMITMENT_MATCH[report.get('commitment_match')]}"
                     + (f" ({report['published_commitment']})" if report.get("published_commitment") else ""))
    claim = report.get("claim")
    if claim:
        lines.append(f"  test          {'verified' if report.get('test_verified') else 'not verified'} on its own")
        lines += _claim_lines(claim)
    return lines


def _claim_lines(claim: dict) -> list[str]:
    """A claim's provenance (a [`~hf_ingrain.hub.provenance.ClaimCheck`]'s dict): what a third party re-checks."""
    lines = []
    if claim.get("endpoint"):
        lines.append(f"  endpoint      {claim['endpoint']} (every file, sha and Hub date below was read there)")
    lines.append(f"  reference     {claim['reference_repo_id']} @ {claim['reference_commit_sha']}")
    lines.append(f"  first published  {claim['first_published_at']} ({claim['first_published_sha']}): "
                 f"{claim.get('first_published_source') or 'Hub commit date'}; proves nothing on its own")
    stamp = claim.get("timestamp")
    if stamp and stamp.get("verified"):
        accuracy = f" ± {stamp['accuracy']:g} s" if stamp.get("accuracy") else ""
        lines.append(f"  timestamped   {stamp['time']}{accuracy} ({stamp['file']} @ {stamp['commit_sha']}): "
                     f"{stamp['source']}")
    elif stamp:
        checked = f"against {stamp['ca_file']}" if stamp.get("ca_file") else "(no trusted TSA CA given)"
        lines.append(f"  timestamped   {stamp['file']} @ {stamp['commit_sha']}: NOT verified {checked}")
    elif "timestamp" in claim:
        lines.append("  timestamped   no RFC 3161 timestamp of the commitment is published")
    if claim.get("suspect_commit_sha"):
        weights = ", ".join(f"{path} {content}" for path, content in (claim.get("suspect_weights") or {}).items())
        lines.append(f"  suspect       {claim['suspect_repo_id']} @ {claim['suspect_commit_sha']}"
                     + (f", weights {weights}" if weights else ""))
    where = claim.get("suspect_first_repo_id")
    sha = f"{where}@{claim['suspect_first_sha']}" if where else claim["suspect_first_sha"]
    what = f", {claim['suspect_date_what']}" if claim.get("suspect_date_what") else ""
    source = f": {claim['suspect_date_source']}" if claim.get("suspect_date_source") else ""
    lines.append(f"  suspect since    {claim['suspect_created_at']} ({sha}{what}){source}")
    for publication in claim.get("suspect_lineage") or []:
        if (publication["repo_id"], publication["commit_sha"]) != (where, claim["suspect_first_sha"]):
            lines.append(f"  lineage       {publication['repo_id']}@{publication['commit_sha']} at "
                         f"{publication['date']}: {publication['what']}")
    lines += [f"  lineage       {note}" for note in claim.get("suspect_notes") or []]
    if "precedence" in claim:
        lines.append("  precedence    " + ("ESTABLISHED by the verified timestamp" if claim["precedence"] else
                                         "NOT established: only a verified RFC 3161 timestamp older than the suspect's first "
                                         "publication establishes it"))
    audit = claim.get("key_audit")
    lines.append("  key audit     " + ("none: the key's ingrainers were not re-derived" if audit is None else
                                     f"{'passed' if audit['passed'] else 'FAILED'}: {len(audit['checked'])} ingrainers "
                                     "re-derived from the key's seed, recipe and benign data"))
    lines += [f"  REFUSED       {reason}" for reason in claim["refusals"]]
    return lines


def _headline(report: dict, name: str) -> str:
    """Two verdicts, named apart: whether the watermark is present (the statistical test, what an owner checks before
    publishing) and, for a claim (`claim` in the report), whether the claim stands (that test plus its provenance).
    A test is never called a claim: without one, the headline says that precedence was not checked."""
    if report.get("claim"):
        if report["verified"]:
            return (f"CLAIM STANDS: {name} carries the watermark of an audited key, whose commitment was timestamped "
                    "before the suspect was published.")
        if report.get("test_verified"):
            return f"CLAIM REFUSED: the test finds the watermark of the key in {name}, but the claim cannot stand."
        return f"CLAIM REFUSED: the test does not find the watermark in {name} at alpha = {report['alpha']:g}."
    if report["verified"]:
        return (f"WATERMARK PRESENT: {name} carries the watermark of the key (a test, not a claim: precedence not "
                "checked; a claim names the owner's repository with --reference).")
    return f"WATERMARK NOT FOUND: the test does not find the watermark in {name} at alpha = {report['alpha']:g}."


def summary(report: dict, brief: bool = False) -> str:
    r"""
    The one printout of a verification: `report` is `result.to_dict()`, with optional context (`model`, `data`,
    `key_commitment`) as `hf-ingrain verify` adds it.

    Args:
        report (`dict`): the result's fields, and the context.
        brief (`bool`, *optional*, defaults to `False`): the one-line verdict (`str(result)`), and for a Hub suspect
            where it came from and the claim; else the full report.
    """
    if brief:
        return "\n".join([_verdict_line(report)] + _provenance_lines(report))
    name = report.get("model") or report.get("repo_id") or "the model"
    lines = [_headline(report, name)]
    unit = "bits" if report["protocol"] == "uchida" else "queries"
    agreement = "no query compared" if not report["num_queries"] else f"{report['agreement']:.3f}"
    scores = report["protocol"] == "ingrain_scores"
    lines += [
        f"  protocol      {report['protocol']}",
        f"  correlation   {agreement} with the key's own part, over {report['num_queries']} {unit}" if scores else
        f"  agreement     {agreement} ({report['num_agreements']} of {report['num_queries']} {unit})",
        f"  references    {report['null_rate']:.3f}, their mean correlation" if scores else
        f"  null rate     {report['null_rate']:.3f}",
        f"  p-value       {format_p_value(report['p_value'], relation=False)} (verified when <= alpha = "
        f"{report['alpha']:g})",
    ]
    details = report.get("details") or {}
    for term, value in (details.get("null_rate_terms") or {}).items():
        if isinstance(value, dict):  # a label-only route: its own null rate over the inputs it compared
            lines.append(f"    {term:<14}{value['null_rate']:.3f} over {value['num_compared']} compared inputs")
        else:
            lines.append(f"    {term:<14}{value:.3f}")
    if "queries_sent" in details:
        lines.append(
            f"  sent          {details['queries_sent']} queries for {details['inputs_used']} inputs "
            f"({details['unanswered']} whose label never changed)"
        )
    key_draw = details.get("key_draw") or {}
    if "t" in key_draw:
        lines.append(
            f"  key draw      {'correlation' if scores else 'agreement'} with {key_draw['num_references']} reference "
            f"keys {key_draw['mean']:.3f} "
            f"(sd {key_draw['sd']:.3f}): t = {key_draw['t']:.1f}, p {format_p_value(key_draw['p_value'], False)}"
        )
    elif "p_value_binomial" in details:
        lines.append("  key draw      none: this key has no reference ingrainers (binomial test alone)")
    if "accuracy" in details:
        lines.append(f"  accuracy      {details['accuracy']:.3f} on the labelled queries")
    if "bit_error_rate" in details:
        lines.append(f"  bit errors    {details['bit_error_rate']:.3f}")
    if report.get("data"):
        lines.append(f"  queries       {report['data']['name']} / {report['data']['split']}")
    if report.get("query_digest"):
        lines.append(f"  query set     {report['query_digest']} ({COMMITTED[report.get('committed_queries')]})")
    if report.get("committed_test") is not None:
        differences = (report.get("details") or {}).get("test_differences") or []
        lines.append("  procedure     " + ("the committed one (protocol, alpha, budget, ladder)" if report["committed_test"]
                                           else "NOT the committed one: " + ", ".join(differences)))
    if report.get("num_duplicates"):
        lines.append(f"  duplicates    {report['num_duplicates']} repeated queries dropped before counting")
    if report.get("num_near_duplicates"):
        lines.append(f"  near copies   {report['num_near_duplicates']} near-duplicate queries dropped before counting")
    lines += _provenance_lines(report)
    if report.get("key_commitment"):
        lines.append(f"  key           commitment {report['key_commitment']}")
    return "\n".join(lines)
