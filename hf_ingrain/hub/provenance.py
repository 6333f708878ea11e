r"""
Which came first: the owner's commitment or the suspect? The Hub's commit history answers, for a claim of ownership.

A watermark test says that a model agrees with a key far beyond chance. It does not say who made the key first: a
thief can copy a published model, fit a key of their own to it (carriers are random, any model fits them) and claim
the original. What decides between two claims is the earlier commitment. [`check_claim`] reads the owner's reference
repository at a pinned commit, finds the first commit that published the key's commitment (and the query set it
committed to), finds the suspect repository's first commit, and says whether the commitment is strictly older.

The dates are the Hub's: commits made through the Hub API are dated by the Hub, but a `git push` carries the dates its
author wrote. A date the suspect's side could have written is evidence to weigh, not proof; for a dispute, keep the
Hub's record of your publication (or an external timestamp of the commitment) as well.
"""

import json
import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

WATERMARK_FILE = "watermark.json"
CARD_FILE = "README.md"


@dataclass
class ClaimCheck:
    r"""
    What [`check_claim`] found.

    Args:
        reference_repo_id (`str`): the owner's repository.
        reference_commit_sha (`str`): the commit of the reference that was read.
        published_commitment (`str`, *optional*): the key commitment the reference publishes at that commit.
        published_queries (`dict`, *optional*): the committed query set it publishes (`digest`, `num_queries`).
        first_published_sha (`str`, *optional*): the first commit of the reference that published the commitment.
        first_published_at (`str`, *optional*): its date (ISO 8601, the Hub's).
        suspect_first_sha (`str`): the suspect repository's first commit.
        suspect_created_at (`str`): its date.
        refusals (`list[str]`): why the claim cannot stand on this evidence (empty when it can).
    """

    reference_repo_id: str
    reference_commit_sha: str
    published_commitment: str | None = None
    published_queries: dict | None = None
    first_published_sha: str | None = None
    first_published_at: str | None = None
    suspect_first_sha: str = ""
    suspect_created_at: str = ""
    refusals: list = field(default_factory=list)

    @property
    def precedence(self) -> bool:
        """Whether the commitment was published strictly before the suspect repository's first commit."""
        return bool(self.first_published_at) and self.first_published_at < self.suspect_created_at


def read_watermark_block(api, repo_id: str, sha: str, files, cache_dir=None) -> dict | None:
    """The `watermark` block a repository publishes at commit `sha` (`watermark.json`, else the card's metadata)."""
    from huggingface_hub import hf_hub_download

    from .model_card import read_watermark_metadata

    if WATERMARK_FILE in files:
        path = hf_hub_download(repo_id, WATERMARK_FILE, revision=sha, token=api.token, cache_dir=cache_dir)
        try:
            with open(path, encoding="utf-8") as f:
                block = json.load(f)
            return block if isinstance(block, dict) else None
        except (OSError, json.JSONDecodeError) as error:
            logger.warning("Unreadable %s in %s at %s: %s", WATERMARK_FILE, repo_id, sha, error)
    if CARD_FILE in files:
        path = hf_hub_download(repo_id, CARD_FILE, revision=sha, token=api.token, cache_dir=cache_dir)
        return read_watermark_metadata(path)
    return None


def check_reference_is_not_suspect(reference_repo_id: str, suspect_repo_id: str) -> None:
    if reference_repo_id == suspect_repo_id:
        raise ValueError(
            f"The reference {reference_repo_id!r} is the suspect itself: pass the owner's own repository, where the "
            "key's commitment was published first."
        )


def _history(api, repo_id: str, sha: str) -> list:
    """The commits of `repo_id` up to `sha`, oldest first."""
    return list(reversed(api.list_repo_commits(repo_id, revision=sha)))


def _files_at(api, repo_id: str, sha: str) -> list[str]:
    return api.list_repo_files(repo_id, revision=sha)


def check_claim(
    api, key, reference_repo_id: str, suspect_repo_id: str, suspect_sha: str, reference_revision=None, cache_dir=None
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

    Returns:
        [`ClaimCheck`]: the dates, the shas and the reasons the claim cannot stand, if any.
    """
    from ..suspects.loading import resolve_revision

    check_reference_is_not_suspect(reference_repo_id, suspect_repo_id)
    reference_sha = resolve_revision(api, reference_repo_id, reference_revision).sha
    check = ClaimCheck(reference_repo_id=reference_repo_id, reference_commit_sha=reference_sha)
    block = read_watermark_block(api, reference_repo_id, reference_sha, _files_at(api, reference_repo_id, reference_sha), cache_dir)
    check.published_commitment = (block or {}).get("key_commitment")
    check.published_queries = (block or {}).get("queries")
    suspect_history = _history(api, suspect_repo_id, suspect_sha)
    check.suspect_first_sha = suspect_history[0].commit_id
    check.suspect_created_at = suspect_history[0].created_at.isoformat()
    commitment = key.commitment()
    if check.published_commitment != commitment:
        check.refusals.append(
            f"{reference_repo_id} at {reference_sha} publishes the commitment {check.published_commitment}, not this "
            f"key's ({commitment})."
        )
        return check
    for commit in _history(api, reference_repo_id, reference_sha):
        files = _files_at(api, reference_repo_id, commit.commit_id)
        earlier = read_watermark_block(api, reference_repo_id, commit.commit_id, files, cache_dir)
        if earlier and earlier.get("key_commitment") == commitment:
            check.first_published_sha, check.first_published_at = commit.commit_id, commit.created_at.isoformat()
            break
    if not check.precedence:
        check.refusals.append(
            f"The key's commitment was first published at {check.first_published_at} ({reference_repo_id}@"
            f"{check.first_published_sha}), not before the suspect's first commit at {check.suspect_created_at} "
            f"({suspect_repo_id}@{check.suspect_first_sha}): the earlier commitment decides between two claims."
        )
    if not check.published_queries:
        check.refusals.append(
            f"{reference_repo_id} publishes no committed query set, so nothing shows that the queries were fixed before "
            "the suspect was seen (commit them with `WatermarkKey.commit_queries` before publishing)."
        )
    return check
