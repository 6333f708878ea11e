r"""
Publish watermarked models to the Hub, and verify models downloaded from it: Hub I/O only.

The two Hub moments of an owner:

- [`push_to_hub`] publishes a watermarked model in one commit: safetensors weights, `config.json`, the
  preprocessing files, a model card (`README.md`) whose YAML metadata holds the `watermark` block (the key's
  commitment, the protocol and its parameters, the verification result at publication; see
  [`hf_ingrain.model_card`]) and the same block as `watermark.json`. The key itself never leaves the owner's machine.
- [`verify_from_hub`] checks a model someone else published, trusting nothing in the repository: it loads it through
  [`hf_ingrain.suspects.load_suspect`] (the revision resolved to one commit sha, safetensors only, never repository
  code), compares the card's commitment with the owner's key, then runs [`verify`].

The endpoint is huggingface_hub's (`HF_ENDPOINT`), and the token is the usual one (`token=`, `HF_TOKEN` or the
stored login).
"""

import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields

from torch import nn

from .keys import WatermarkKey
from .model_card import CARD_FILE, WATERMARK_FILE, read_watermark_metadata, save_watermark_card
from .model_inputs import load_processor
from .provenance import check_claim, check_reference_is_not_suspect
from .queries import read_queries
from .suspects import is_hub_id, load_suspect
from .suspects.loading import published_files
from .verification import DEFAULT_ALPHA, VerificationResult, verify

logger = logging.getLogger(__name__)

__all__ = ["HubVerificationResult", "is_hub_id", "push_to_hub", "verify_from_hub", "verify_model_or_repo"]


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
            [`hf_ingrain.provenance.ClaimCheck`]): both shas, both dates, `precedence` and the `refusals`.
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

    def __str__(self) -> str:
        match = {True: "matches the key", False: "DOES NOT match the key", None: "absent from the card"}
        text = (
            f"{super().__str__()}\n{self.repo_id} @ {self.revision} (commit {self.commit_sha}); "
            f"published commitment {match[self.commitment_match]}"
        )
        if self.claim is not None:
            text += "\n" + "\n".join(["claim refused:"] + self.claim["refusals"] if self.claim["refusals"] else [
                f"claim: commitment first published {self.claim['first_published_at']} "
                f"({self.claim['reference_repo_id']}@{self.claim['first_published_sha']}), before the suspect's first "
                f"commit {self.claim['suspect_created_at']}"
            ])
        return text


def _check_repo_id(repo_id: str) -> None:
    if not is_hub_id(repo_id):
        if os.path.exists(str(repo_id)):
            raise ValueError(f"{repo_id!r} is a local path, not a Hub repository id; use `verify()` for local models.")
        raise ValueError(f"{repo_id!r} is not a Hub repository id: write it as `namespace/name`, e.g. `me/my-model`.")


def _check_key(key, dataset, protocol: str = "ingrain") -> None:
    if not callable(getattr(key, "commitment", None)):
        raise ValueError(f"`key` must be a WatermarkKey (see `WatermarkKey.load`), got {type(key).__name__}.")
    if protocol == "ingrain":
        if getattr(key, "ingrainer", None) is None:
            raise ValueError("The key has no trained ingrainer: call `key.train_ingrainer(...)` first.")
        if dataset is None:
            raise ValueError("Pass benign queries as `dataset=` (e.g. your test split): verification needs them.")


def push_to_hub(
    model,
    repo_id: str,
    key: WatermarkKey,
    dataset=None,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    ingrain_lambda: float | None = None,
    ingrain_temperature: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    tags: list[str] | None = None,
    batch_size: int = 256,
    committed_queries=None,
) -> str:
    r"""
    Publishes a watermarked model in one commit: safetensors weights, config, model card and `watermark.json`.

    The model is verified with `key` on `dataset` first, and the result is recorded in the card with the key's
    commitment (never the key). A model that does not verify is still published, with a warning and
    `verified: false` in its card.

    Args:
        model (`PreTrainedModel` or `str`):
            The watermarked model, or a folder written by `save_pretrained` / a Trainer's `output_dir` (only
            `config.json`, `*.safetensors` and preprocessing files are taken from it).
        repo_id (`str`):
            The repository, `namespace/name`; created if it does not exist.
        key ([`WatermarkKey`]):
            The owner's key; it stays local, only its commitment is published.
        dataset (`datasets.Dataset`):
            Benign queries for the verification recorded in the card (e.g. the test split).
        private (`bool`, *optional*, defaults to `False`):
            Create the repository as private (no effect on an existing repository).
        token (`str`, *optional*):
            A write token; defaults to `HF_TOKEN` or the stored login.
        revision (`str`, *optional*):
            The branch to commit to (must exist); defaults to the main branch.
        commit_message (`str`, *optional*):
            Defaults to `"Upload ingrain-watermarked model"`.
        commit_description (`str`, *optional*):
            Longer description of the commit.
        ingrain_lambda (`float`, *optional*):
            The `ingrain_lambda` the model was trained with, recorded in the card.
        ingrain_temperature (`float`, *optional*):
            The `ingrain_temperature` the model was trained with, recorded in the card.
        alpha (`float`, *optional*, defaults to 1e-6):
            Significance level of the recorded verification.
        tags (`list[str]`, *optional*):
            Extra Hub tags (`hf_ingrain`, `ingrain`, `watermark` are always set).
        batch_size (`int`, *optional*, defaults to 256):
            Queries per forward pass during verification.
        committed_queries (`datasets.Dataset`, *optional*):
            The benign query set the card commits to (its digest is published; see `hf_ingrain.queries`). Defaults
            to the set the key commits to ([`~WatermarkKey.commit_queries`]), else `dataset`.

    Returns:
        `str`: the sha of the commit.

    Example:

    ```python
    >>> from hf_ingrain.hub import push_to_hub
    >>> sha = push_to_hub(model, "me/my-model", key, dataset=splits["test"], ingrain_lambda=0.5)
    ```
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    _check_repo_id(repo_id)
    _check_key(key, dataset)
    folder = None
    if isinstance(model, (str, os.PathLike)):
        folder = os.fspath(model)
        if not os.path.isdir(folder):
            raise ValueError(f"No model folder at {folder!r}: give a folder written by `save_pretrained` or a Trainer.")
        model = load_suspect(folder).model  # safetensors only, no repository code: what is published loads safely
    elif not (isinstance(model, nn.Module) and hasattr(model, "save_pretrained")):
        raise ValueError(
            "`model` must be a transformers model or a folder saved with `save_pretrained`, got "
            f"{type(model).__name__}."
        )
    result = verify(model, key, dataset, alpha=alpha, batch_size=batch_size)
    queries = None
    if committed_queries is not None:
        queries = read_queries(key, committed_queries).commitment()
    elif result.committed_queries is False:
        logger.warning(
            "The verification recorded in the card used other queries than the set the key commits to; the card "
            "publishes the key's committed set."
        )
    if result.verified:
        logger.info("Verified before publishing: %s", result)
    else:
        logger.warning("The model does NOT verify with this key; publishing anyway, with `verified: false`: %s", result)

    staging = tempfile.mkdtemp(prefix="hf_ingrain_push_")
    try:
        if folder is not None:
            for name in published_files(folder):
                shutil.copyfile(os.path.join(folder, name), os.path.join(staging, name))
        else:
            model.save_pretrained(staging)
        save_watermark_card(
            staging, model, key, result, repo_id=repo_id, tags=tags,
            ingrain_lambda=ingrain_lambda, ingrain_temperature=ingrain_temperature, queries=queries,
        )
        upload = published_files(staging) + [CARD_FILE, WATERMARK_FILE]  # never a pickle: not a safe pattern
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=os.path.join(staging, p)) for p in upload]
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
        except HfHubHTTPError as error:
            raise ValueError(
                f"Could not create or open {repo_id!r} at {api.endpoint} ({error}). Log in with `hf auth login`, or "
                "pass a token with write access (`token=` or `HF_TOKEN`)."
            ) from error
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or "Upload ingrain-watermarked model",
            commit_description=commit_description,
            revision=revision,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Published %s to %s at commit %s", upload, repo_id, info.oid)
    return info.oid


def verify_from_hub(
    repo_id: str,
    key: WatermarkKey,
    dataset=None,
    revision: str | None = None,
    allow_pickle: bool = False,
    token: str | None = None,
    cache_dir: str | None = None,
    protocol: str = "ingrain",
    alpha: float = DEFAULT_ALPHA,
    reference_repo_id: str | None = None,
    reference_revision: str | None = None,
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
        protocol (`str`, *optional*, defaults to `"ingrain"`):
            The [`verify`] protocol.
        alpha (`float`, *optional*, defaults to 1e-6):
            Significance level.
        reference_repo_id (`str`, *optional*):
            The owner's repository, where the key's commitment (and its committed query set) was published: makes
            this a claim of ownership (see [`hf_ingrain.provenance`]). The claim is verified only if the test
            verifies, the reference publishes this key's commitment, it did so strictly before the suspect
            repository's first commit, and the queries are the set it committed to; `claim` in the result holds
            both dates, both shas and the reasons for a refusal.
        reference_revision (`str`, *optional*):
            The revision of the reference to read (default: its main branch).
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
    (True, 2.3e-45, '9c1e...', True)
    ```
    """
    from huggingface_hub import HfApi

    _check_repo_id(repo_id)
    _check_key(key, dataset, protocol)
    if reference_repo_id is not None:
        _check_repo_id(reference_repo_id)
        check_reference_is_not_suspect(reference_repo_id, repo_id)
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
        claim = check_claim(
            HfApi(token=token), key, reference_repo_id, repo_id, suspect.commit_sha, reference_revision, cache_dir
        )
        verify_kwargs.setdefault("committed_digest", claim.published_queries or None)
    elif commitment_match and (block or {}).get("queries"):  # the owner's own published model: its card's set
        verify_kwargs.setdefault("committed_digest", block["queries"])
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
        hub_result.claim = {**asdict(claim), "precedence": claim.precedence, "refusals": refusals}
        hub_result.test_verified = result.verified
        hub_result.verified = result.verified and not refusals
    return hub_result


def verify_model_or_repo(
    model,
    key: WatermarkKey,
    dataset=None,
    revision: str | None = None,
    allow_pickle: bool = False,
    token: str | None = None,
    **verify_kwargs,
) -> VerificationResult:
    r"""
    [`verify_from_hub`] when `model` is a Hub id (see [`is_hub_id`]), else [`verify`]: the entry point of
    `hf-ingrain verify MODEL`.

    Args:
        model (`str`, `nn.Module` or callable): a Hub id, a local folder, a model or a scoring callable.
        key ([`WatermarkKey`]): the owner's key.
        dataset (`datasets.Dataset`, *optional*): benign queries.
        revision (`str`, *optional*): only for a Hub id.
        allow_pickle (`bool`, *optional*, defaults to `False`): only for a Hub id; see [`verify_from_hub`].
        token (`str`, *optional*): only for a Hub id.
        **verify_kwargs: `protocol`, `alpha`, `batch_size`, ... passed to [`verify`].
    """
    if isinstance(model, (str, os.PathLike)) and is_hub_id(os.fspath(model)):
        return verify_from_hub(
            os.fspath(model), key, dataset, revision=revision, allow_pickle=allow_pickle, token=token, **verify_kwargs
        )
    if revision is not None:
        raise ValueError(f"`revision` applies to Hub ids only, but {model!r} is a local model; drop `--revision`.")
    return verify(model, key, dataset, **verify_kwargs)
