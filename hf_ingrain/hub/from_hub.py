r"""
Verify a model downloaded from the Hub, trusting nothing in the repository: [`verify_from_hub`] loads it through
[`hf_ingrain.suspects.load_suspect`] (the revision resolved to one commit sha, safetensors only, never repository
code), compares the card's commitment with the owner's key, runs [`~hf_ingrain.verify`], and with
`reference_repo_id` checks the claim's provenance ([`hf_ingrain.hub.provenance`]).
"""

import logging
import os
from dataclasses import asdict, dataclass, fields

from ..data.committed_test import read_committed_test
from ..data.preparation import load_processor
from ..keys import WatermarkKey
from ..keys.querying import forget_scores
from ..suspects import load_suspect
from ..suspects.loading import weight_files
from ..verification import DEFAULT_ALPHA, VerificationResult, verify
from .model_card import read_watermark_metadata
from .provenance import check_claim, check_reference_is_not_suspect
from .publish import check_key, check_repo_id

logger = logging.getLogger(__name__)


@dataclass
class HubVerificationResult(VerificationResult):
    r"""
    The outcome of [`verify_from_hub`]: a [`VerificationResult`] and where the model came from.

    Args:
        repo_id (`str`): the repository verified.
        revision (`str`): the revision asked for (`"main"` when none was given).
        commit_sha (`str`): the commit the revision resolved to; every downloaded file comes from it.
        commitment_match (`bool` or `None`): whether the commitment in the repository's model card equals
            `key.commitment()`; `None` when the card has no commitment.
        published_commitment (`str` or `None`): the commitment found in the card.
        claim (`dict` or `None`): with `reference_repo_id`, the provenance of the claim (see
            [`hf_ingrain.hub.provenance.ClaimCheck`]): the endpoint, the shas, each date with its source, the
            commitment's timestamp, the suspect's first publication, `precedence` and the `refusals`.
        test_verified (`bool` or `None`): with `reference_repo_id`, the watermark test's own verdict; `verified` is
            then the claim's (the test and the provenance).
    """

    repo_id: str = ""
    revision: str = "main"
    commit_sha: str = ""
    commitment_match: bool | None = None
    published_commitment: str | None = None
    claim: dict | None = None
    test_verified: bool | None = None


def verify_from_hub(
    repo_id: str,
    key: WatermarkKey,
    dataset=None,
    *,
    revision: str | None = None,
    allow_pickle: bool = False,
    token: str | None = None,
    cache_dir: str | None = None,
    protocol: str | None = None,
    alpha: float | None = None,
    reference_repo_id: str | None = None,
    reference_revision: str | None = None,
    timestamp_ca: str | None = None,
    key_audit=None,
    **verify_kwargs,
) -> HubVerificationResult:
    r"""
    Downloads a model from the Hub, trusting nothing in the repository, and verifies it with the owner's key.

    The revision is resolved to a commit sha first and every file is downloaded at that sha, so the result names
    exactly what was tested. Only top-level `config.json`, safetensors weights, preprocessing files and the model card
    are downloaded (never `checkpoint-*/` subfolders). A repository with pickle weights only is refused (loading a
    pickle can run arbitrary code) unless `allow_pickle=True`, and one that needs custom code (an `auto_map` in its
    config, or a model type transformers does not know) is always refused; see [`hf_ingrain.suspects`]. If the card publishes a key commitment, it is compared with `key.commitment()`; a mismatch is logged
    and reported as `commitment_match=False`, and the model is still tested.

    Args:
        repo_id (`str`):
            The suspect repository, `namespace/name`.
        key ([`WatermarkKey`]):
            The owner's key.
        dataset (`datasets.Dataset`):
            Benign queries (required by the `"ingrain"` protocol).
        revision (`str`, *optional*):
            A branch, tag or commit sha; defaults to the main branch.
        allow_pickle (`bool`, *optional*, defaults to `False`):
            UNSAFE: accept `pytorch_model.bin` (pickle) weights when the repository has no safetensors. Only for
            repositories you trust; a warning is logged.
        token (`str`, *optional*):
            For private or gated repositories; defaults to `HF_TOKEN` or the stored login.
        cache_dir (`str`, *optional*):
            Where downloads are cached; defaults to the Hugging Face cache.
        protocol (`str`, *optional*):
            The [`verify`] protocol. Defaults to the committed test's in a claim (with its `max_queries` and `ladder`
            unless given), else `"ingrain"`. A claim stands only on the committed test.
        alpha (`float`, *optional*):
            Significance level. Defaults to the committed test's in a claim, else 1e-6.
        reference_repo_id (`str`, *optional*):
            The owner's repository, where the key's commitment (and its committed query set) was published: makes
            this a claim of ownership (see [`hf_ingrain.hub.provenance`]). The claim is verified only if the test
            verifies, the reference publishes this key's commitment, an RFC 3161 timestamp of it (`commitment.tsr`,
            verified against `timestamp_ca`) is strictly older than the suspect's first publication (of the tested
            weights, or of a `base_model` it declares), and the queries are the set it committed to. Hub commit dates
            are reported and decide nothing. `claim` in the result holds the endpoint, the shas, each date with its
            source and the reasons for a refusal.
        reference_revision (`str`, *optional*):
            The revision of the reference to read (default: its main branch).
        timestamp_ca (`str`, *optional*):
            With `reference_repo_id`: the PEM certificate(s) of the time-stamping authority's CA that you trust.
            Without it no timestamp is verified, and the claim cannot stand.
        key_audit ([`~hf_ingrain.keys.KeyAudit`], *optional*):
            With `reference_repo_id`: the audit of `key` ([`~hf_ingrain.keys.audit_key`]: its ingrainers re-derived
            from its seed, recipe and benign data). A claim stands only on an audited key with at least
            `MIN_CLAIM_REFERENCES` reference ingrainers: a key folder can hold any ingrainer, and only the
            re-derivation shows that it holds what its seed gives.
        **verify_kwargs:
            Further options of [`verify`] (`batch_size`, `show_progress`, `processor`, the column names, ...). For
            raw images or texts without `processor`, the image processor or tokenizer published with the model, at
            the same commit, is applied; in a dispute, pass your own (the queries as your model received them).

    Returns:
        [`HubVerificationResult`]

    Example:

    ```python
    >>> from hf_ingrain.hub import verify_from_hub
    >>> result = verify_from_hub("someone/suspect", key, dataset=splits["test"])
    >>> result.verified, result.p_value, result.commit_sha, result.commitment_match
    (True, 3.3e-10, '9c1e...', True)
    ```
    """
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    check_key(key, dataset, protocol or "ingrain")
    if reference_repo_id is not None:
        check_repo_id(reference_repo_id)
        check_reference_is_not_suspect(reference_repo_id, repo_id)
    if timestamp_ca is not None:
        if reference_repo_id is None:
            raise ValueError("`timestamp_ca` verifies the timestamp of a claim: pass `reference_repo_id` too.")
        if not os.path.isfile(timestamp_ca):
            raise ValueError(f"No CA certificate at {timestamp_ca!r}: pass the PEM certificate of the TSA's CA.")
    suspect = load_suspect(repo_id, revision, allow_pickle=allow_pickle, token=token, cache_dir=cache_dir)
    where = f"{repo_id!r} at commit {suspect.commit_sha}"
    block = read_watermark_metadata(suspect.card_path) if suspect.card_path else None
    published = block.get("key_commitment") if block else None
    commitment_match = None
    if published:
        commitment_match = published == key.commitment()
        if not commitment_match:
            logger.warning(
                "The key commitment in the model card of %s (%s...) does NOT match your key (%s...): this model was "
                "published with another key, or the card was changed. Verifying anyway.",
                where, str(published)[:12], key.commitment()[:12],
            )
    else:
        logger.info("The model card of %s publishes no key commitment.", where)

    claim = None
    if reference_repo_id is not None:  # before the test: the committed query set comes from the owner's card
        forget_scores(key)  # a claim's test queries the (audited) ingrainers, never scores read from a key folder
        safetensors, pickles = weight_files(suspect.files)
        claim = check_claim(
            HfApi(token=token), key, reference_repo_id, repo_id, suspect.commit_sha, reference_revision, cache_dir,
            timestamp_ca=timestamp_ca, weight_paths=safetensors or pickles,
        )
        # a claim's queries and test are the first publication's, whatever the caller passes
        verify_kwargs["committed_digest"] = claim.published_queries or None
        committed = read_committed_test(claim.published_queries)
        if committed is not None:  # unless the caller asks for another (which the claim then refuses)
            protocol, alpha = protocol or committed["protocol"], committed["alpha"] if alpha is None else alpha
            for name in ("max_queries", "ladder"):
                if committed[name] is not None:
                    verify_kwargs.setdefault(name, committed[name])
    elif commitment_match and (block or {}).get("queries"):  # the owner's own published model: its card's set
        verify_kwargs.setdefault("committed_digest", block["queries"])
    protocol, alpha = protocol or "ingrain", DEFAULT_ALPHA if alpha is None else alpha
    if verify_kwargs.get("processor") is None:  # raw queries: the processor files of the same commit
        verify_kwargs["processor"] = load_processor(suspect.folder)
    result = verify(suspect.model, key, dataset, protocol=protocol, alpha=alpha, **verify_kwargs)
    values = {f.name: getattr(result, f.name) for f in fields(VerificationResult)}
    hub_result = HubVerificationResult(
        **values,
        repo_id=repo_id,
        revision=suspect.revision,
        commit_sha=suspect.commit_sha,
        commitment_match=commitment_match,
        published_commitment=str(published) if published else None,
    )
    if claim is not None:
        refusals = list(claim.refusals)
        if claim.published_queries and result.committed_queries is False:
            refusals.append(
                f"The queries (digest {result.query_digest}) are not the set {reference_repo_id} committed to "
                f"({claim.published_queries.get('digest')}): queries chosen after seeing the suspect prove nothing."
            )
        refusals += _test_refusals(claim.published_queries, result, reference_repo_id)
        refusals += _key_refusals(key, key_audit)
        hub_result.claim = {**claim.to_dict(), "refusals": refusals,
                            "key_audit": None if key_audit is None else asdict(key_audit)}
        hub_result.test_verified = result.verified
        hub_result.verified = result.verified and not refusals
    return hub_result


MIN_CLAIM_REFERENCES = 16
"""The fewest reference ingrainers a key needs for a claim: the key-draw test's threshold at alpha = 1e-6 is about 7.7
standard deviations at 16 references and grows fast below (Student's t with R - 1 degrees of freedom)."""


def _test_refusals(published_queries, result, reference_repo_id) -> list[str]:
    """Why the test run is not the claim's: no test was committed, or another test ran (`hf_ingrain.data.committed_test`)."""
    if not published_queries:
        return []  # refused already: no committed query set
    if read_committed_test(published_queries) is None:
        return [
            f"{reference_repo_id} committed to queries but not to the test run on them (protocol, alpha, budget, "
            "ladder), so the test could have been chosen after seeing the suspect's answers (commit it with "
            "`WatermarkKey.commit_queries(..., protocol=..., alpha=...)` before publishing)."
        ]
    if not result.committed_test:
        differences = result.details.get("test_differences") or [f"protocol {result.protocol!r}"]
        return [
            "The test run is not the one committed at first publication: " + ", ".join(differences)
            + ". A test picked after seeing the answers proves nothing; the p-value above answers only whether the "
            "watermark is present."
        ]
    return []


def _key_refusals(key, key_audit) -> list[str]:
    """Why the key cannot carry a claim: not audited, audited and refused, another key's audit, too few references."""
    refusals = []
    if key_audit is None:
        refusals.append(
            "The key was not audited: a key folder can hold any ingrainer, and only re-deriving its ingrainers from its "
            "seed, its recipe and its benign data shows that it holds what its seed gives (pass "
            "`key_audit=hf_ingrain.keys.audit_key(key, benign_data)`; CLI: --audit-data)."
        )
    elif key_audit.commitment != key.commitment():
        refusals.append("The audit given is of another key (its commitment differs): audit this key.")
    elif not key_audit.passed:
        refusals.append("The key failed its audit: " + "; ".join(key_audit.refusals) + ".")
    num_references = len(getattr(key, "reference_ingrainers", []))
    if num_references < MIN_CLAIM_REFERENCES:
        refusals.append(
            f"The key has {num_references} reference ingrainers; a claim needs at least {MIN_CLAIM_REFERENCES} "
            "(the key-draw test's other keys): train the key with `num_reference_keys` >= 16."
        )
    return refusals
