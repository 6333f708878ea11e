r"""
Publish a watermarked model to the Hub: [`push_to_hub`] uploads, in one commit, the safetensors weights,
`config.json`, the preprocessing files, a model card (`README.md`) whose YAML metadata holds the `watermark` block
(the key's commitment, the protocol and its parameters, the verification at publication; see
[`hf_ingrain.hub.model_card`]) and the same block as `watermark.json`, with the commitment's RFC 3161 timestamp
(`commitment.tsr`, see [`hf_ingrain.hub.timestamps`]) when the owner has one. The key itself never leaves the owner's
machine.
`IngrainTrainer.push_to_hub` publishes through the same function.

The endpoint is huggingface_hub's (`HF_ENDPOINT`), and the token is the usual one (`token=`, `HF_TOKEN` or the
stored login).
"""

import logging
import os
import shutil
import tempfile
import warnings

from torch import nn

from ..data.committed_test import SCORES_PROTOCOLS
from ..data.query_set import read_queries
from ..files import atomic_file
from ..keys import WatermarkKey
from ..suspects import is_hub_id, load_suspect
from ..suspects.loading import published_files
from ..verification import DEFAULT_ALPHA, verify
from .model_card import CARD_FILE, WATERMARK_FILE, save_watermark_card
from .timestamps import TIMESTAMP_FILE, check_token_covers, read_timestamp

logger = logging.getLogger(__name__)


def check_repo_id(repo_id: str) -> None:
    """Refuses a local path or a malformed id where a Hub repository id is expected."""
    if not is_hub_id(repo_id):
        if os.path.exists(str(repo_id)):
            raise ValueError(f"{repo_id!r} is a local path, not a Hub repository id; use `verify()` for local models.")
        raise ValueError(f"{repo_id!r} is not a Hub repository id: write it as `namespace/name`, e.g. `me/my-model`.")


def check_key(key, dataset, protocol: str = "ingrain") -> None:
    """Refuses what is not a trained key, and an ingrain verification without queries, before any work."""
    if not callable(getattr(key, "commitment", None)):
        raise ValueError(f"`key` must be a WatermarkKey (see `WatermarkKey.load`), got {type(key).__name__}.")
    if protocol in SCORES_PROTOCOLS:
        if getattr(key, "ingrainer", None) is None:
            raise ValueError("The key has no trained ingrainer: call `key.train_ingrainer(...)` first.")
        if dataset is None:
            raise ValueError(
                "Pass benign queries (e.g. your test split) as `verification_dataset=` (`dataset=` for verify_from_hub): "
                "verification needs them."
            )


def push_to_hub(
    model,
    repo_id: str,
    key: WatermarkKey,
    verification_dataset=None,
    *,
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
    timestamp=None,
    dataset=None,
) -> str:
    r"""
    Publishes a watermarked model in one commit: safetensors weights, config, model card and `watermark.json`.

    The model is verified with `key` on `verification_dataset` first, and the result is recorded in the card with the
    key's commitment (never the key). A model that does not verify is still published, with a warning and
    `verified: false` in its card. `IngrainTrainer.push_to_hub` publishes through the same card writer and the same
    commit ([`write_watermark_card`], [`publish_folder`]).

    Args:
        model (`PreTrainedModel` or `str`):
            The watermarked model, or a folder written by `save_pretrained` / a Trainer's `output_dir` (only
            `config.json`, `*.safetensors` and preprocessing files are taken from it).
        repo_id (`str`):
            The repository, `namespace/name`; created if it does not exist.
        key ([`WatermarkKey`]):
            The owner's key; it stays local, only its commitment is published.
        verification_dataset (`datasets.Dataset`):
            Benign queries for the verification recorded in the card (e.g. the test split); the same argument as
            `IngrainTrainer.push_to_hub`'s.
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
            The benign query set the card commits to (its digest is published; see `hf_ingrain.data.query_set`).
            Defaults to the set the key commits to ([`~WatermarkKey.commit_queries`]), else `verification_dataset`.
        timestamp (`bytes` or path, *optional*):
            The RFC 3161 timestamp of the key's commitment (`hf-ingrain timestamp`, or
            [`~hf_ingrain.hub.timestamps.request_timestamp`]), obtained before this push: uploaded as `commitment.tsr`
            and named in the card. A claim of ownership stands only on such a date; a token over another commitment
            is refused before any work.
        dataset (`datasets.Dataset`, *optional*):
            Deprecated name of `verification_dataset` (0.1).

    Returns:
        `str`: the sha of the commit.

    Example:

    ```python
    >>> from hf_ingrain.hub import push_to_hub
    >>> sha = push_to_hub(model, "me/my-model", key, verification_dataset=splits["test"], ingrain_lambda=0.5)
    ```
    """
    if dataset is not None:
        warnings.warn("`push_to_hub(dataset=...)` is deprecated: use `verification_dataset=`.", FutureWarning,
                      stacklevel=2)
        verification_dataset = dataset if verification_dataset is None else verification_dataset
    check_repo_id(repo_id)
    check_key(key, verification_dataset)
    if timestamp is not None:
        read_commitment_timestamp(timestamp, key)  # a wrong token fails before any work
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
    staging = tempfile.mkdtemp(prefix="hf_ingrain_push_")
    try:
        if folder is not None:
            for name in published_files(folder):
                shutil.copyfile(os.path.join(folder, name), os.path.join(staging, name))
        else:
            model.save_pretrained(staging)
        write_watermark_card(
            staging, model, key, verification_dataset, alpha=alpha, batch_size=batch_size,
            committed_queries=committed_queries, timestamp=timestamp, repo_id=repo_id, tags=tags,
            ingrain_lambda=ingrain_lambda, ingrain_temperature=ingrain_temperature,
        )
        info = publish_folder(staging, repo_id, token=token, private=private, revision=revision,
                              commit_message=commit_message, commit_description=commit_description)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info.oid


def write_watermark_card(
    folder: str,
    model,
    key,
    verification_dataset=None,
    *,
    alpha: float = DEFAULT_ALPHA,
    batch_size: int = 256,
    committed_queries=None,
    timestamp=None,
    trainer_card=None,
    **card,
):
    r"""
    Verifies `model` with `key` on `verification_dataset` (when given) and writes the watermark card and
    `watermark.json` into `folder`: the one card writer of both publishing paths ([`push_to_hub`] and
    `IngrainTrainer.push_to_hub` / `create_model_card`). The model's train/eval mode is left as it was.

    Args:
        folder (`str`): the model folder to write the card into.
        model (`PreTrainedModel`): the model the card describes.
        key ([`WatermarkKey`], *optional*): the owner's key; only its commitment is written.
        verification_dataset (`datasets.Dataset`, *optional*): benign queries for the recorded verification.
        alpha (`float`), batch_size (`int`): of the recorded verification.
        committed_queries (`datasets.Dataset`, *optional*): the query set the card commits to (default: the key's).
        timestamp (`bytes` or path, *optional*): the RFC 3161 token of the key's commitment, written as
            `commitment.tsr` and named in the card's `timestamp` entry.
        trainer_card (`huggingface_hub.ModelCard`, *optional*): what `Trainer.create_model_card` wrote, merged in.
        **card: `model_name`, `repo_id`, `tags`, `ingrain_lambda`, `ingrain_temperature`, `training_strength` for
            [`~hf_ingrain.hub.model_card.save_watermark_card`].

    Returns:
        [`VerificationResult`] or `None` (no `verification_dataset`).
    """
    result, queries, stamped = None, None, None
    if timestamp is not None:
        token, info = read_commitment_timestamp(timestamp, key)
        with atomic_file(os.path.join(folder, TIMESTAMP_FILE)) as temporary, open(temporary, "wb") as f:
            f.write(token)
        stamped = info.to_block(TIMESTAMP_FILE)
    if key is not None and verification_dataset is not None:
        result = verify(model, key, verification_dataset, alpha=alpha, batch_size=batch_size,
                        protocol=publication_protocol(key))
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
            logger.warning("The model does NOT verify with this key; publishing anyway, with `verified: false`: %s",
                           result)
    save_watermark_card(folder, model, key, result, queries=queries, timestamp=stamped, trainer_card=trainer_card,
                        **card)
    return result


def publication_protocol(key) -> str:
    """The scores protocol the card records at publication: the key's committed one (`"ingrain"` or
    `"ingrain_scores"`), else `"ingrain_scores"` for a two-class key (it has no runner-up test) and `"ingrain"`."""
    test = (getattr(key, "committed_queries", None) or {}).get("test") or {}
    if test.get("protocol") in SCORES_PROTOCOLS:
        return test["protocol"]
    return "ingrain_scores" if key.num_labels == 2 else "ingrain"


def read_commitment_timestamp(timestamp, key):
    """The token's bytes and what it states, refused unless it is a granted RFC 3161 token over `key`'s commitment.
    Its signature is checked by whoever relies on it, against the CA they trust (see [`verify_from_hub`])."""
    if key is None:
        raise ValueError("A timestamp covers a key's commitment: pass the key it was obtained for.")
    token = bytes(timestamp) if isinstance(timestamp, (bytes, bytearray)) else None
    if token is None:
        if not os.path.isfile(os.fspath(timestamp)):
            raise ValueError(f"No timestamp token at {os.fspath(timestamp)!r}: obtain one with `hf-ingrain timestamp`.")
        with open(os.fspath(timestamp), "rb") as f:
            token = f.read()
    info = read_timestamp(token)
    check_token_covers(info, key.commitment())
    return token, info


def publish_folder(
    folder: str,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    blocking: bool = True,
):
    r"""
    Uploads the safe files of a model folder that holds its watermark card, in one commit: `config.json`, the
    safetensors weights, the preprocessing files ([`~hf_ingrain.suspects.loading.published_files`]), `README.md`,
    `watermark.json` and the commitment's timestamp `commitment.tsr` if the folder holds one. Never a pickle (`training_args.bin`, `pytorch_model.bin`), trainer state, results files or
    checkpoints. The repository is created if it does not exist.

    Returns:
        `huggingface_hub.CommitInfo` (a future of it with `blocking=False`).
    """
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    upload = published_files(folder) + [CARD_FILE, WATERMARK_FILE]  # never a pickle: not a safe pattern
    if os.path.isfile(os.path.join(folder, TIMESTAMP_FILE)):  # the commitment's RFC 3161 token, when there is one
        upload.append(TIMESTAMP_FILE)
    operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=os.path.join(folder, p)) for p in upload]
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
    except HfHubHTTPError as error:
        raise ValueError(
            f"Could not create or open {repo_id!r} at {api.endpoint} ({error}). Log in with `hf auth login`, or "
            "pass a token with write access (`token=` or `HF_TOKEN`)."
        ) from error
    info = api.create_commit(
        repo_id, operations, commit_message=commit_message or "Upload ingrain-watermarked model",
        commit_description=commit_description, revision=revision, run_as_future=not blocking,
    )
    logger.info("Publishing %s to %s", upload, repo_id)
    return info
