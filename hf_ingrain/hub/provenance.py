r"""
Which came first: the owner's commitment or the suspect? What a claim of ownership needs, with a source for each date.

A watermark test says that a model agrees with a key far beyond chance. It does not say who made the key first: a
thief can copy a published model, fit a key of their own to it (carriers are random, any model fits them) and claim
the original. What decides between two claims is the earlier commitment, and only a date the claimant could not write
decides it. [`check_claim`] reads the owner's reference repository at a pinned commit and the suspect, and records:

- the endpoint it read, and every sha;
- the commitment's first publication in the reference, a *Hub commit date*: a `git push` carries the dates its author
  wrote and a self-hosted endpoint can record any date, so it is reported and never decides;
- the commitment's RFC 3161 timestamp (`commitment.tsr`, [`hf_ingrain.hub.timestamps`]), verified against the TSA CA
  the verifier trusts (`timestamp_ca`): the one date that establishes precedence;
- the suspect's first publication of the tested weights, or of the `base_model` it declares
  ([`hf_ingrain.hub.lineage`]): a re-upload of the victim is not newer than the victim.

Precedence is established only by a verified timestamp strictly before the suspect's first publication; anything less
is a refusal that says why and what to do.
"""

import json
import logging
from dataclasses import dataclass, field

from .lineage import HUB_DATE_SOURCE, first_publication, history, instant
from .timestamps import TIMESTAMP_FILE, verify_timestamp

logger = logging.getLogger(__name__)

WATERMARK_FILE = "watermark.json"
CARD_FILE = "README.md"
HOW_TO_TIMESTAMP = (
    "timestamp the commitment when publishing (`hf-ingrain timestamp --key KEY --tsa URL --output commitment.tsr`, "
    "then `hf-ingrain push ... --timestamp commitment.tsr`) and verify with the TSA's CA (`--timestamp-ca FILE`)"
)


@dataclass
class ClaimCheck:
    r"""
    What [`check_claim`] found: every sha, every date with its source, and the reasons the claim cannot stand.

    Args:
        reference_repo_id (`str`): the owner's repository.
        reference_commit_sha (`str`): the commit of the reference that was read.
        endpoint (`str`): the Hub endpoint every date and file was read from.
        published_commitment (`str`, *optional*): the key commitment the reference publishes at that commit.
        published_queries (`dict`, *optional*): the committed query set (`digest`, `num_queries`), as the commit that
            first published the commitment holds it.
        first_published_sha (`str`, *optional*): the first commit of the reference that published the commitment.
        first_published_at (`str`, *optional*): its date (ISO 8601), from `first_published_source`.
        first_published_source (`str`): a Hub commit date, as the endpoint recorded it.
        timestamp (`dict`, *optional*): the commitment's RFC 3161 timestamp: `file`, `commit_sha` (where it was
            read), `time`, `accuracy` (seconds, as the TSA declares it), `latest` (`time + accuracy`), `tsa`,
            `ca_file`, `verified`, `source`.
        suspect_repo_id (`str`): the suspect repository.
        suspect_commit_sha (`str`): the suspect's commit that was tested.
        suspect_first_sha (`str`): the commit whose date is the suspect's first publication.
        suspect_first_repo_id (`str`): its repository (the suspect's, or a declared `base_model`).
        suspect_created_at (`str`): the suspect's first publication (ISO 8601).
        suspect_date_what (`str`): which publication that is.
        suspect_date_source (`str`): where its date comes from.
        suspect_weights (`dict`): `{path: content id}` of the tested weights.
        suspect_lineage (`list[dict]`): every publication considered, and `suspect_notes` what the Hub does not tell.
        refusals (`list[str]`): why the claim cannot stand on this evidence (empty when it can).
    """

    reference_repo_id: str
    reference_commit_sha: str
    endpoint: str = ""
    published_commitment: str | None = None
    published_queries: dict | None = None
    first_published_sha: str | None = None
    first_published_at: str | None = None
    first_published_source: str = HUB_DATE_SOURCE
    timestamp: dict | None = None
    suspect_repo_id: str = ""
    suspect_commit_sha: str = ""
    suspect_first_sha: str = ""
    suspect_first_repo_id: str = ""
    suspect_created_at: str = ""
    suspect_date_what: str = ""
    suspect_date_source: str = HUB_DATE_SOURCE
    suspect_weights: dict = field(default_factory=dict)
    suspect_lineage: list = field(default_factory=list)
    suspect_notes: list = field(default_factory=list)
    refusals: list = field(default_factory=list)

    @property
    def precedence(self) -> bool:
        """Established: a timestamp of the commitment, verified against the trusted CA, strictly before the suspect's
        first publication, by more than the TSA's declared accuracy."""
        stamp = self.timestamp or {}
        return bool(stamp.get("verified") and self.suspect_created_at) and (
            instant(stamp["latest"]) < instant(self.suspect_created_at)
        )

    @property
    def hub_precedence(self) -> bool:
        """What the Hub's commit dates alone say (reported, never decisive): commitment before the suspect."""
        return bool(self.first_published_at and self.suspect_created_at) and (
            instant(self.first_published_at) < instant(self.suspect_created_at)
        )

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "precedence": self.precedence, "hub_precedence": self.hub_precedence}


def read_watermark_block(api, repo_id: str, sha: str, files, cache_dir=None) -> dict | None:
    """The `watermark` block a repository publishes at commit `sha` (`watermark.json`, else the card's metadata)."""
    from huggingface_hub import hf_hub_download

    from .model_card import read_watermark_metadata

    if WATERMARK_FILE in files:
        path = hf_hub_download(repo_id, WATERMARK_FILE, revision=sha, token=api.token, cache_dir=cache_dir,
                               endpoint=api.endpoint)
        try:
            with open(path, encoding="utf-8") as f:
                block = json.load(f)
            return block if isinstance(block, dict) else None
        except (OSError, json.JSONDecodeError) as error:
            logger.warning("Unreadable %s in %s at %s: %s", WATERMARK_FILE, repo_id, sha, error)
    if CARD_FILE in files:
        path = hf_hub_download(repo_id, CARD_FILE, revision=sha, token=api.token, cache_dir=cache_dir,
                               endpoint=api.endpoint)
        return read_watermark_metadata(path)
    return None


def check_reference_is_not_suspect(reference_repo_id: str, suspect_repo_id: str) -> None:
    if reference_repo_id == suspect_repo_id:
        raise ValueError(
            f"The reference {reference_repo_id!r} is the suspect itself: pass the owner's own repository, where the "
            "key's commitment was published first."
        )


def _files_at(api, repo_id: str, sha: str) -> list[str]:
    return api.list_repo_files(repo_id, revision=sha)


def _timestamp(api, check: ClaimCheck, block: dict, files, commitment: str, ca_file, cache_dir) -> str | None:
    """Reads and verifies the reference's timestamp token into `check.timestamp`; returns why it establishes nothing
    (or `None` when it is verified)."""
    from huggingface_hub import hf_hub_download

    named = block.get("timestamp") if isinstance(block.get("timestamp"), dict) else {}
    name = str(named.get("file") or TIMESTAMP_FILE)
    where = f"{check.reference_repo_id}@{check.reference_commit_sha}"
    if name not in files:
        if named:
            return f"The card of {where} names the timestamp token {name}, which the repository does not hold."
        return None  # no token at all: the caller says what Hub dates alone are worth
    check.timestamp = {"file": name, "commit_sha": check.reference_commit_sha, "verified": False,
                       "ca_file": None if ca_file is None else str(ca_file)}
    path = hf_hub_download(check.reference_repo_id, name, revision=check.reference_commit_sha, token=api.token,
                           cache_dir=cache_dir, endpoint=api.endpoint)
    if ca_file is None:
        return (
            f"{where} publishes an RFC 3161 timestamp of the commitment ({name}), but no trusted TSA CA was given "
            "(`timestamp_ca=` / `--timestamp-ca FILE`): a token nobody checked proves nothing."
        )
    try:
        info = verify_timestamp(path, commitment, str(ca_file))
    except ValueError as error:
        return f"The timestamp {name} in {where} establishes nothing: {error}"
    check.timestamp.update(
        time=info.time.isoformat(timespec="milliseconds"), accuracy=info.accuracy.total_seconds(),
        latest=info.latest.isoformat(timespec="microseconds"), tsa=info.tsa, verified=True,
        source=f"RFC 3161 timestamp by {info.tsa} (verified against {ca_file})",
    )
    return None


def _suspect(api, check: ClaimCheck, suspect_repo_id, suspect_sha, weight_paths, cache_dir) -> None:
    found = first_publication(api, suspect_repo_id, suspect_sha, weight_paths, cache_dir)
    earliest = found.earliest
    check.suspect_first_repo_id, check.suspect_first_sha = earliest.repo_id, earliest.commit_sha
    check.suspect_created_at, check.suspect_date_what, check.suspect_date_source = earliest.date, earliest.what, earliest.source
    check.suspect_weights, check.suspect_notes = found.weights, found.notes
    check.suspect_lineage = found.to_dict()["publications"]


def check_claim(
    api,
    key,
    reference_repo_id: str,
    suspect_repo_id: str,
    suspect_sha: str,
    reference_revision=None,
    cache_dir=None,
    *,
    timestamp_ca: str | None = None,
    weight_paths=None,
) -> ClaimCheck:
    r"""
    Checks the provenance side of a claim that `suspect_repo_id` was derived from the model `key` watermarked, as
    published in `reference_repo_id`.

    Args:
        api (`huggingface_hub.HfApi`): the client (its endpoint and token).
        key ([`WatermarkKey`]): the owner's key.
        reference_repo_id (`str`): the owner's repository, where the key's commitment was published.
        suspect_repo_id (`str`): the suspect repository.
        suspect_sha (`str`): the suspect's commit being tested.
        reference_revision (`str`, *optional*): the reference's revision to read (default: its main branch).
        cache_dir (`str`, *optional*): the download cache.
        timestamp_ca (`str`, *optional*): PEM certificate(s) of the TSA CA the verifier trusts; without it no
            timestamp is verified, so no precedence is established.
        weight_paths (`list[str]`, *optional*): the suspect's weight files that were tested (default: its top-level
            safetensors).

    Returns:
        [`ClaimCheck`]: the endpoint, the shas, the dates and their sources, and the reasons the claim cannot stand.
    """
    from ..suspects.loading import resolve_revision

    check_reference_is_not_suspect(reference_repo_id, suspect_repo_id)
    reference_sha = resolve_revision(api, reference_repo_id, reference_revision).sha
    check = ClaimCheck(reference_repo_id=reference_repo_id, reference_commit_sha=reference_sha, endpoint=api.endpoint,
                       suspect_repo_id=suspect_repo_id, suspect_commit_sha=suspect_sha)
    files = _files_at(api, reference_repo_id, reference_sha)
    block = read_watermark_block(api, reference_repo_id, reference_sha, files, cache_dir) or {}
    check.published_commitment = block.get("key_commitment")
    check.published_queries = block.get("queries")
    _suspect(api, check, suspect_repo_id, suspect_sha, weight_paths, cache_dir)
    commitment = key.commitment()
    if check.published_commitment != commitment:
        check.refusals.append(
            f"{reference_repo_id} at {reference_sha} publishes the commitment {check.published_commitment}, not this "
            f"key's ({commitment})."
        )
        return check
    for commit in history(api, reference_repo_id, reference_sha):
        earlier = read_watermark_block(api, reference_repo_id, commit.commit_id,
                                       _files_at(api, reference_repo_id, commit.commit_id), cache_dir)
        if earlier and earlier.get("key_commitment") == commitment:
            check.first_published_sha, check.first_published_at = commit.commit_id, commit.created_at.isoformat()
            # the committed queries are those the commitment was first published with: a card pushed later, after
            # the suspect could be seen, does not change them
            check.published_queries = earlier.get("queries")
            if (block.get("queries") or None) != (earlier.get("queries") or None):
                check.refusals.append(
                    f"{reference_repo_id} publishes another query set at {reference_sha} than when it first published "
                    f"the commitment ({check.first_published_sha}): queries changed after the suspect may have been "
                    "seen are not the committed ones; the claim reads the first publication's."
                )
            break
    suspect = (f"the suspect's first publication at {check.suspect_created_at} "
               f"({check.suspect_first_repo_id}@{check.suspect_first_sha}, {check.suspect_date_what})")
    problem = _timestamp(api, check, block, files, commitment, timestamp_ca, cache_dir)
    if problem:
        check.refusals.append(f"{problem} Precedence is not established: {HOW_TO_TIMESTAMP}.")
    elif check.timestamp is None:
        hub_says = "before" if check.hub_precedence else "not before"
        check.refusals.append(
            f"Precedence rests on Hub commit dates alone: {check.endpoint} records the commitment as first published "
            f"at {check.first_published_at} ({reference_repo_id}@{check.first_published_sha}), {hub_says} {suspect}. "
            f"A git push carries the dates its author wrote and a self-hosted endpoint can record any date, so this "
            f"proves nothing to a third party: {HOW_TO_TIMESTAMP}."
        )
    elif not check.precedence:
        check.refusals.append(
            f"The commitment was timestamped at {check.timestamp['time']} (± {check.timestamp['accuracy']:g} s) by "
            f"{check.timestamp['tsa']}, not before {suspect}: the earlier commitment decides between two claims."
        )
    if not check.published_queries:
        check.refusals.append(
            f"{reference_repo_id} publishes no committed query set, so nothing shows that the queries were fixed before "
            "the suspect was seen (commit them with `WatermarkKey.commit_queries` before publishing)."
        )
    return check
