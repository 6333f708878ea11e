r"""
When was a suspect first published, as far as the Hub tells? Not its repository's first commit: the first commit at
which the weights that were tested were present (by the content hash the Hub reports for each file: the LFS sha256),
and, when its card names a `base_model` on the same endpoint, that ancestor's first publication of weights (following
the chain). A re-upload of a model that declares where it came from is as old as what it came from.

Every date here is a Hub commit date as the endpoint recorded it: the suspect's side can backdate its own commits
with a `git push` (which only makes a claim against it harder), and a self-hosted endpoint can record any date, so
the report names the endpoint it read. What the Hub does not tell (weights copied to another repository without a
`base_model`) is said, not guessed.
"""

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

logger = logging.getLogger(__name__)

HUB_DATE_SOURCE = (
    "Hub commit date, as the endpoint recorded it (a git push carries the dates its author wrote; a self-hosted "
    "endpoint can record any date)"
)
MAX_ANCESTORS = 16  # repositories followed through `base_model`, at most


@dataclass
class Publication:
    r"""
    A dated publication: which repository, which commit, what it published, and where the date comes from.

    Args:
        repo_id (`str`): the repository.
        commit_sha (`str`): the commit.
        date (`str`): its date (ISO 8601).
        what (`str`): what this commit is ("first commit holding the tested weights", ...).
        source (`str`): where the date comes from (see `HUB_DATE_SOURCE`).
    """

    repo_id: str
    commit_sha: str
    date: str
    what: str
    source: str = HUB_DATE_SOURCE


@dataclass
class FirstPublication:
    r"""
    The suspect's first publication as the Hub tells it: the earliest of `publications`, and the notes on what the
    Hub does not tell.

    Args:
        earliest ([`Publication`]): the one whose date is the suspect's.
        weights (`dict`): `{path: content id}` of the tested weights (`sha256:...` from the Hub's LFS metadata, else
            `git:<blob id>`).
        publications (`list[Publication]`): every dated publication considered (the suspect's own, its ancestors').
        notes (`list[str]`): what the Hub does not tell.
    """

    earliest: Publication
    weights: dict = field(default_factory=dict)
    publications: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def content_ids(api, repo_id: str, sha: str) -> dict[str, str]:
    """`{path: content id}` of every file of `repo_id` at `sha`: `sha256:<hex>` where the Hub reports LFS metadata (as
    it does for weights), else `git:<blob id>` (also a hash of the content, the git way)."""
    ids = {}
    for entry in api.list_repo_tree(repo_id, revision=sha, recursive=True):
        lfs = getattr(entry, "lfs", None)
        if lfs is not None:
            ids[entry.path] = f"sha256:{lfs.sha256}"
        elif getattr(entry, "blob_id", None):
            ids[entry.path] = f"git:{entry.blob_id}"
    return ids


def history(api, repo_id: str, sha: str | None = None) -> list:
    """The commits of `repo_id` up to `sha` (default: the main branch), oldest first."""
    return list(reversed(api.list_repo_commits(repo_id, revision=sha)))


def _first_with(api, repo_id: str, commits: list, holds) -> object | None:
    for commit in commits:
        if holds(content_ids(api, repo_id, commit.commit_id)):
            return commit
    return None


def _base_models(api, repo_id: str, sha: str, cache_dir=None) -> list[str]:
    """The `base_model` entries of a repository's card at `sha` (none if it has no card)."""
    from huggingface_hub import ModelCard, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = hf_hub_download(repo_id, "README.md", revision=sha, token=api.token, cache_dir=cache_dir,
                               endpoint=api.endpoint)
    except EntryNotFoundError:
        return []
    try:
        base = ModelCard.load(path, ignore_metadata_errors=True).data.to_dict().get("base_model")
    except Exception as error:  # a malformed card is reported, never trusted
        logger.warning("Could not read the card of %s at %s: %s", repo_id, sha, error)
        return []
    if isinstance(base, str):
        return [base]
    return [b for b in base or [] if isinstance(b, str)]


def _ancestor_publication(api, repo_id: str, declared_by: str) -> tuple[Publication | None, str | None, str | None]:
    """(first publication of weights in an ancestor, its head sha, a note when the Hub does not tell)."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    from ..suspects import is_hub_id
    from ..suspects.loading import weight_files

    if not is_hub_id(repo_id):
        return None, None, f"{declared_by} declares base_model {repo_id!r}, which is not a Hub repository id."
    try:
        commits = history(api, repo_id)
    except (RepositoryNotFoundError, HfHubHTTPError) as error:
        note = (f"{declared_by} declares base_model {repo_id}, which {api.endpoint} does not hold ({type(error).__name__}): "
                "the Hub does not tell when it was first published.")
        return None, None, note
    first = _first_with(api, repo_id, commits, lambda ids: any(weight_files(list(ids))))
    what = f"first commit with model weights of {repo_id}, declared as base_model by {declared_by}"
    if first is None:
        first, what = commits[0], f"first commit of {repo_id} (no weights in its history), base_model of {declared_by}"
    return Publication(repo_id, first.commit_id, first.created_at.isoformat(), what), commits[-1].commit_id, None


def first_publication(api, repo_id: str, sha: str, weight_paths=None, cache_dir=None) -> FirstPublication:
    r"""
    The suspect's first publication as the Hub tells it: the first commit of `repo_id` (up to `sha`) at which the
    tested weights were present, and the first publication of weights of every `base_model` its card declares on
    the same endpoint, followed through their cards; the earliest of them decides.

    Args:
        api (`huggingface_hub.HfApi`): the client (its endpoint and token).
        repo_id (`str`): the suspect repository.
        sha (`str`): the suspect's commit that was tested.
        weight_paths (`list[str]`, *optional*): the weight files that were tested (default: the top-level
            safetensors at `sha`, else the pickles).
        cache_dir (`str`, *optional*): the download cache (for the cards).

    Returns:
        [`FirstPublication`]
    """
    from ..suspects.loading import weight_files

    ids = content_ids(api, repo_id, sha)
    if weight_paths is None:
        safetensors, pickles = weight_files([p for p in ids if "/" not in p])
        weight_paths = safetensors or pickles
    weights = {path: ids[path] for path in weight_paths if path in ids}
    commits = history(api, repo_id, sha)
    notes = []
    wanted = set(weights.values())
    first = _first_with(api, repo_id, commits, lambda present: wanted <= set(present.values())) if wanted else None
    if first is None:  # no weights to follow: the repository's first commit, as before
        first, what = commits[0], "first commit of the repository (no tested weights to follow)"
    else:
        what = "first commit holding the tested weights" + (" (the repository's first commit)" if first is commits[0]
                                                            else f", after {commits.index(first)} earlier commits")
    publications = [Publication(repo_id, first.commit_id, first.created_at.isoformat(), what)]
    if any(v.startswith("git:") for v in weights.values()):
        notes.append(f"The Hub reports no LFS sha256 for the weights of {repo_id}; they were followed by git blob id.")

    pending, seen = [(base, repo_id, sha) for base in _base_models(api, repo_id, sha, cache_dir)], {repo_id}
    if not pending:
        notes.append(
            f"{repo_id} declares no base_model: if these weights were published earlier under another name, the Hub "
            "does not tell."
        )
    while pending and len(seen) <= MAX_ANCESTORS:
        ancestor, declared_by, _ = pending.pop(0)
        if ancestor in seen:
            continue
        seen.add(ancestor)
        publication, head, note = _ancestor_publication(api, ancestor, declared_by)
        if note:
            notes.append(note)
            continue
        publications.append(publication)
        pending += [(base, ancestor, head) for base in _base_models(api, ancestor, head, cache_dir)]
    if pending:
        notes.append(f"The base_model chain was followed through {MAX_ANCESTORS} repositories and no further.")
    earliest = min(publications, key=lambda p: instant(p.date))
    return FirstPublication(earliest, weights, publications, notes)


def instant(iso: str) -> datetime:
    """An ISO 8601 date as an aware datetime (UTC when it names no zone), for comparing dates of any precision."""
    moment = datetime.fromisoformat(iso)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
