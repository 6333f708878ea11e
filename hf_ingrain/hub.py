r"""
Publish watermarked models to the Hub, and verify models downloaded from it.

The two Hub moments of an owner:

- [`push_to_hub`] publishes a watermarked model in one commit: safetensors weights, `config.json`, a model card
  (`README.md`) whose YAML metadata holds the `watermark` block (the key's commitment, the protocol and its
  parameters, the verification result at publication; see [`hf_ingrain.model_card`]) and the same block as
  `watermark.json`. The key itself never leaves the owner's machine.
- [`verify_from_hub`] checks a model someone else published, trusting nothing in the repository: it resolves the
  revision to a commit sha, downloads only `config.json`, safetensors weights and the card at that exact commit,
  refuses pickle weights (unless explicitly allowed) and repositories that need custom code (never
  `trust_remote_code`), compares the card's commitment with the owner's key, then runs [`verify`].

The endpoint is huggingface_hub's (`HF_ENDPOINT`), and the token is the usual one (`token=`, `HF_TOKEN` or the
stored login).
"""

import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, fields

from torch import nn

from .keys import WatermarkKey
from .model_card import render_model_card, read_watermark_metadata, watermark_metadata
from .verification import DEFAULT_ALPHA, VerificationResult, verify

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
WATERMARK_FILE = "watermark.json"
CONFIG_FILE = "config.json"
# Everything push_to_hub publishes from a model folder (besides the card and watermark.json): weights as
# safetensors, the config, and the preprocessing files a user needs to run the model. Nothing else is uploaded,
# so optimizer states, `training_args.bin` (a pickle) or stray files of a Trainer output folder stay local.
PUBLISHED_PATTERNS = (
    CONFIG_FILE,
    "*.safetensors",
    "*.safetensors.index.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
# what verify_from_hub downloads: config, safetensors weights and the card (for the commitment)
SAFE_DOWNLOAD_PATTERNS = [CONFIG_FILE, "*.safetensors", "*.safetensors.index.json", CARD_FILE]
# pickle weights that transformers can load; only downloaded with allow_pickle=True
PICKLE_DOWNLOAD_PATTERNS = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
NOT_WEIGHTS = ("training_args.bin",)  # pickles a Trainer writes that are not weights
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


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
    """

    repo_id: str = ""
    revision: str = "main"
    commit_sha: str = ""
    commitment_match: bool | None = None
    published_commitment: str | None = None

    def __str__(self) -> str:
        match = {True: "matches the key", False: "DOES NOT match the key", None: "absent from the card"}
        return (
            f"{super().__str__()}\n{self.repo_id} @ {self.revision} (commit {self.commit_sha}); "
            f"published commitment {match[self.commitment_match]}"
        )


def is_hub_id(name: str) -> bool:
    """Whether `name` reads as a Hub repository id (`namespace/name`) rather than a local path.

    An existing local path always wins, and a name starting with `.`, `/` or `~` is a path.
    """
    name = str(name)
    if os.path.exists(name) or name.startswith((".", "/", "~")):
        return False
    return bool(_REPO_ID.match(name)) and ".." not in name and "--" not in name


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


def _pipeline_tag(config) -> str | None:
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if "ImageClassification" in architectures:
        return "image-classification"
    if "SequenceClassification" in architectures:
        return "text-classification"
    return None


def _weight_files(files) -> tuple[list[str], list[str]]:
    """(safetensors weights, pickle weights) among repository or folder file names."""
    safetensors = [f for f in files if f.endswith(".safetensors")]
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES) and os.path.basename(f) not in NOT_WEIGHTS]
    return safetensors, pickles


def _load_pretrained(folder: str, use_safetensors: bool = True):
    """Loads a classifier from a local folder without running any repository code."""
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    is_text = _pipeline_tag(config) == "text-classification"
    auto = AutoModelForSequenceClassification if is_text else AutoModelForImageClassification
    try:
        model = auto.from_pretrained(folder, use_safetensors=use_safetensors, trust_remote_code=False)
    except ValueError as error:
        raise ValueError(
            f"Could not load the model in {folder} as a classifier ({error}); hf_ingrain verifies image and "
            "sequence classification models."
        ) from error
    return model.eval()


def _check_model_folder(folder: str) -> None:
    if not os.path.isdir(folder):
        raise ValueError(f"No model folder at {folder!r}: give a folder written by `save_pretrained` or a Trainer.")
    files = os.listdir(folder)
    safetensors, pickles = _weight_files(files)
    if CONFIG_FILE not in files or not (safetensors or pickles):
        checkpoints = sorted((f for f in files if re.fullmatch(r"checkpoint-\d+", f)), key=lambda f: int(f[11:]))
        hint = ""
        if checkpoints:
            hint = f" It has checkpoints: pass one of them, e.g. {os.path.join(folder, checkpoints[-1])!r}."
        raise ValueError(
            f"{folder!r} has no model (config.json and weights): call `trainer.save_model()` first.{hint}"
        )
    if not safetensors:
        raise ValueError(
            f"{folder!r} has pickle weights only ({', '.join(pickles)}); publish safetensors: load the model and "
            "`model.save_pretrained(folder)` (transformers writes safetensors)."
        )


def _published_files(folder: str) -> list[str]:
    """Files at the top of `folder` (never in `checkpoint-*/` or other subfolders) that match PUBLISHED_PATTERNS."""
    return sorted(
        name for name in os.listdir(folder)
        if os.path.isfile(os.path.join(folder, name)) and any(fnmatch.fnmatch(name, p) for p in PUBLISHED_PATTERNS)
    )


def save_watermark_card(
    folder: str,
    model=None,
    key: WatermarkKey | None = None,
    result: VerificationResult | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
    tags: list[str] | None = None,
    ingrain_lambda: float | None = None,
    ingrain_temperature: float | None = None,
):
    r"""
    Writes the model card (`README.md`) and `watermark.json` of a watermarked model into `folder`.

    Args:
        folder (`str`): where to write them (created if needed).
        model (`PreTrainedModel`, *optional*): the model; its config gives the card's pipeline tag.
        key ([`WatermarkKey`], *optional*): the owner's key; only its commitment is written.
        result ([`VerificationResult`], *optional*): the verification at publication.
        model_name (`str`, *optional*): the card's title; defaults to the repository name or the folder name.
        repo_id (`str`, *optional*): the repository the card is for.
        tags (`list[str]`, *optional*): extra Hub tags.
        ingrain_lambda (`float`, *optional*): training parameter to record.
        ingrain_temperature (`float`, *optional*): training parameter to record.

    Returns:
        `huggingface_hub.ModelCard`: the card written.
    """
    if isinstance(tags, str):
        tags = [tags]
    watermark = watermark_metadata(key, result, ingrain_lambda, ingrain_temperature)
    if key is None:
        logger.warning("No key given: the model card carries no commitment, so it cannot back a claim of ownership.")
    name = model_name or (repo_id.split("/")[-1] if repo_id else os.path.basename(os.path.abspath(folder)))
    card = render_model_card(
        watermark, model_name=name, repo_id=repo_id, tags=tags,
        pipeline_tag=_pipeline_tag(getattr(model, "config", None)),
    )
    os.makedirs(folder, exist_ok=True)
    for file_name, text in ((CARD_FILE, str(card)), (WATERMARK_FILE, json.dumps(watermark, indent=2) + "\n")):
        staging = os.path.join(folder, f".{file_name}.tmp")
        with open(staging, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(staging, os.path.join(folder, file_name))
    return card


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
        _check_model_folder(folder)
        model = _load_pretrained(folder)
    elif not (isinstance(model, nn.Module) and hasattr(model, "save_pretrained")):
        raise ValueError(
            "`model` must be a transformers model or a folder saved with `save_pretrained`, got "
            f"{type(model).__name__}."
        )
    result = verify(model, key, dataset, alpha=alpha, batch_size=batch_size)
    if result.verified:
        logger.info("Verified before publishing: %s", result)
    else:
        logger.warning("The model does NOT verify with this key; publishing anyway, with `verified: false`: %s", result)

    staging = tempfile.mkdtemp(prefix="hf_ingrain_push_")
    try:
        if folder is not None:
            for name in _published_files(folder):
                shutil.copyfile(os.path.join(folder, name), os.path.join(staging, name))
        else:
            model.save_pretrained(staging)
        save_watermark_card(
            staging, model, key, result, repo_id=repo_id, tags=tags,
            ingrain_lambda=ingrain_lambda, ingrain_temperature=ingrain_temperature,
        )
        upload = _published_files(staging) + [CARD_FILE, WATERMARK_FILE]  # never a pickle: not a published pattern
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


def _resolve(api, repo_id: str, revision: str | None):
    """`model_info` at `revision`, with the client's errors turned into messages naming the repository and revision."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return api.model_info(repo_id, revision=revision)
    except RevisionNotFoundError as error:
        raise ValueError(
            f"Revision {revision!r} not found in {repo_id!r}: give an existing branch, tag or full commit sha "
            "(`HfApi().list_repo_refs` lists them)."
        ) from error
    except RepositoryNotFoundError as error:
        raise ValueError(
            f"Repository {repo_id!r} not found at {api.endpoint} (and there is no local folder of that name): check "
            "the id, or pass a token (`token=`, `HF_TOKEN` or `hf auth login`) if it is private or gated."
        ) from error


def _check_custom_code(repo_id: str, sha: str, config: dict, files: list[str]) -> None:
    from transformers import CONFIG_MAPPING

    where = f"{repo_id!r} at commit {sha}"
    never = (
        "hf_ingrain never runs code from a repository (no `trust_remote_code`). Audit the code, load the model "
        "yourself and call `hf_ingrain.verify(model, key, dataset)`."
    )
    code_files = [f for f in files if f.endswith(".py")]
    if config.get("auto_map") or config.get("custom_pipelines"):
        mapped = config.get("auto_map") or config.get("custom_pipelines")
        raise ValueError(f"{where} needs custom code (config.json maps {mapped}; files {code_files}). {never}")
    model_type = config.get("model_type")
    if not model_type or model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"{where} has model_type {model_type!r}, which transformers does not know, so loading it would need "
            f"custom code (files {code_files}). {never}"
        )


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
    **verify_kwargs,
) -> HubVerificationResult:
    r"""
    Downloads a model from the Hub, trusting nothing in the repository, and verifies it with the owner's key.

    The revision is resolved to a commit sha first and every file is downloaded at that sha, so the result names
    exactly what was tested. Only `config.json`, safetensors weights and the model card are downloaded. A repository
    with pickle weights only is refused (loading a pickle can run arbitrary code) unless `allow_pickle=True`, and
    one that needs custom code (an `auto_map` in its config, or a model type transformers does not know) is always
    refused. If the card publishes a key commitment, it is compared with `key.commitment()`; a mismatch is logged
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
        **verify_kwargs:
            Further options of [`verify`] (`batch_size`, `show_progress`, ...).

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
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    _check_repo_id(repo_id)
    _check_key(key, dataset, protocol)
    api = HfApi(token=token)
    info = _resolve(api, repo_id, revision)
    sha = info.sha
    files = [sibling.rfilename for sibling in info.siblings or []] or api.list_repo_files(repo_id, revision=sha)
    where = f"{repo_id!r} at commit {sha}"
    if CONFIG_FILE not in files:
        raise ValueError(f"{where} has no config.json, so it is not a transformers model hf_ingrain can load.")
    safetensors, pickles = _weight_files(files)
    patterns = list(SAFE_DOWNLOAD_PATTERNS)
    if not safetensors:
        if not pickles:
            raise ValueError(f"{where} has no model weights (no *.safetensors).")
        if not allow_pickle:
            raise ValueError(
                f"{where} has pickle weights only ({', '.join(pickles)}). Loading a pickle can run arbitrary code, so "
                "hf_ingrain refuses it. Ask the publisher for safetensors weights, or, only if you trust this "
                "repository, pass `allow_pickle=True` (CLI: `--allow-unsafe-pickle`)."
            )
        logger.warning(
            "UNSAFE: loading pickle weights %s from %s because allow_pickle=True; a malicious pickle can run code.",
            pickles, where,
        )
        patterns += PICKLE_DOWNLOAD_PATTERNS

    config_path = hf_hub_download(repo_id, CONFIG_FILE, revision=sha, token=token, cache_dir=cache_dir)
    with open(config_path, encoding="utf-8") as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} has an unreadable config.json: {error}") from error
    _check_custom_code(repo_id, sha, config, files)

    local = snapshot_download(repo_id, revision=sha, allow_patterns=patterns, token=token, cache_dir=cache_dir)
    block = read_watermark_metadata(os.path.join(local, CARD_FILE)) if CARD_FILE in files else None
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

    model = _load_pretrained(local, use_safetensors=bool(safetensors))
    result = verify(model, key, dataset, protocol=protocol, alpha=alpha, **verify_kwargs)
    values = {f.name: getattr(result, f.name) for f in fields(VerificationResult)}
    return HubVerificationResult(
        **values,
        repo_id=repo_id,
        revision=revision if revision is not None else "main",
        commit_sha=sha,
        commitment_match=commitment_match,
        published_commitment=str(published) if published else None,
    )


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
