"""Loading a model that is not the caller's own: safetensors only, no repository code, one commit (see
[`hf_ingrain.suspects`])."""

import fnmatch
import json
import logging
import os
import re
from dataclasses import dataclass, field

from torch import nn

from ..files import atomic_folder
from ..models import register_auto_classes

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
# Top-level files of a model folder that are safe to read and that a user needs to run the model.
SAFE_PATTERNS = (
    CONFIG_FILE,
    "*.safetensors",
    "*.safetensors.index.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
PICKLE_PATTERNS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
NOT_WEIGHTS = ("training_args.bin",)  # pickles a Trainer writes that are not weights
CHECKPOINT = re.compile(r"checkpoint-\d+")


@dataclass
class Suspect:
    r"""
    A model loaded by [`load_suspect`], and where it came from.

    Args:
        model (`PreTrainedModel`): the classifier, in eval mode.
        folder (`str`): the local folder its files were read from (a Hub snapshot for a Hub id).
        files (`list[str]`): the top-level files of the folder or repository.
        repo_id (`str`, *optional*): the Hub repository, for a Hub id.
        revision (`str`, *optional*): the revision asked for (`"main"` when none was given), for a Hub id.
        commit_sha (`str`, *optional*): the commit every file was downloaded at, for a Hub id.
    """

    model: nn.Module
    folder: str
    files: list = field(default_factory=list)
    repo_id: str | None = None
    revision: str | None = None
    commit_sha: str | None = None

    @property
    def card_path(self) -> str | None:
        """The model card (`README.md`) when the folder has one."""
        path = os.path.join(self.folder, CARD_FILE)
        return path if os.path.isfile(path) else None


# ------------------------------------------------------------------------------------------------------- loading
def is_hub_id(name) -> bool:
    """Whether `name` reads as a Hub repository id (`namespace/name`) rather than a local path.

    An existing local path always wins, and a name starting with `.`, `/` or `~` is a path.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    name = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    if os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") != 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return all(name.split("/"))


def weight_files(files) -> tuple[list[str], list[str]]:
    """(safetensors weights, pickle weights) among file names."""
    safetensors = [f for f in files if f.endswith(".safetensors")]
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES) and os.path.basename(f) not in NOT_WEIGHTS]
    return safetensors, pickles


def selected_files(files, allow_pickle: bool = False) -> list[str]:
    """The top-level files (no `/` in the name) that [`load_suspect`] reads; pickle weights only when allowed."""
    patterns = SAFE_PATTERNS + ((CARD_FILE,) + (PICKLE_PATTERNS if allow_pickle else ()))
    return sorted(f for f in files if "/" not in f and any(fnmatch.fnmatch(f, p) for p in patterns))


def published_files(folder: str) -> list[str]:
    """Files at the top of `folder` (never in `checkpoint-*/` or other subfolders) that are safe to publish: weights as
    safetensors, the config, processor and tokenizer files; never pickles, trainer state or the card."""
    names = [name for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name))]
    return [name for name in selected_files(names) if name != CARD_FILE]


def check_config_is_safe(config: dict, where: str, files=()) -> None:
    """Refuses a config that needs repository code: an `auto_map`, custom pipelines, or an unknown model type (the
    package's own small models are known: they are registered with transformers first)."""
    from transformers import CONFIG_MAPPING

    register_auto_classes()

    never = (
        "hf_ingrain never runs code from a repository (no `trust_remote_code`). Audit the code, load the model "
        "yourself and call `hf_ingrain.verify(model, key, dataset)`."
    )
    code_files = [f for f in files if f.endswith(".py")]
    mapped = config.get("auto_map") or config.get("custom_pipelines")
    if mapped:
        raise ValueError(f"{where} needs custom code (config.json maps {mapped}; files {code_files}). {never}")
    model_type = config.get("model_type")
    if not model_type or model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"{where} has model_type {model_type!r}, which transformers does not know, so loading it would need "
            f"custom code (files {code_files}). {never}"
        )


def _check_weights(files, where: str, allow_pickle: bool) -> bool:
    """Refuses a folder without weights, or with pickle weights only (unless allowed); True if safetensors."""
    safetensors, pickles = weight_files(files)
    if safetensors:
        return True
    if not pickles:
        raise ValueError(f"{where} has no model weights (no *.safetensors).")
    if not allow_pickle:
        raise ValueError(
            f"{where} has pickle weights only ({', '.join(pickles)}). Loading a pickle can run arbitrary code, so "
            "hf_ingrain refuses it. Ask the publisher for safetensors weights (`model.save_pretrained(folder)` writes "
            "them), or, only if you trust this source, pass `allow_pickle=True` (CLI: `--allow-unsafe-pickle`)."
        )
    logger.warning("UNSAFE: loading pickle weights %s from %s because allow_pickle=True; a pickle can run code.",
                   pickles, where)
    return False


def _auto_class(config):
    """The `AutoModelFor*Classification` class that loads `config`."""
    from transformers import (
        AutoModelForAudioClassification,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
    )

    autos = (AutoModelForImageClassification, AutoModelForSequenceClassification, AutoModelForAudioClassification)
    architectures = getattr(config, "architectures", None) or []
    for auto in autos:
        suffix = auto.__name__[len("AutoModel"):]  # "ForImageClassification", ...
        if any(name.endswith(suffix) for name in architectures):
            return auto
    for auto in autos:
        if type(config) in auto._model_mapping:
            return auto
    raise ValueError(
        f"{type(config).__name__} is not an image, text or audio classifier; hf_ingrain verifies "
        "AutoModelFor{Image,Sequence,Audio}Classification models."
    )


def _load_folder(folder: str, where: str, allow_pickle: bool) -> nn.Module:
    files = sorted(os.listdir(folder))
    if CONFIG_FILE not in files or not any(weight_files(files)):
        checkpoints = sorted((f for f in files if CHECKPOINT.fullmatch(f)), key=lambda f: int(f.split("-")[1]))
        hint = f" It has checkpoints: pass one of them, e.g. {os.path.join(folder, checkpoints[-1])!r}." if checkpoints else ""
        raise ValueError(f"{where} has no model (config.json and weights): call `trainer.save_model()` first.{hint}")
    with open(os.path.join(folder, CONFIG_FILE), encoding="utf-8") as f:
        try:
            raw_config = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} has an unreadable config.json: {error}") from error
    check_config_is_safe(raw_config, where, files)
    use_safetensors = _check_weights(files, where, allow_pickle)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    auto = _auto_class(config)
    try:
        model = auto.from_pretrained(folder, config=config, use_safetensors=use_safetensors, trust_remote_code=False)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"Could not load the classifier in {where} ({reason}).") from error
    return model.eval()


def load_suspect(
    path_or_id,
    revision: str | None = None,
    allow_pickle: bool = False,
    token: str | bool | None = None,
    cache_dir: str | None = None,
) -> Suspect:
    r"""
    Loads a classifier from a local folder or a Hub id, with the policy of the module docstring.

    Args:
        path_or_id (`str` or `os.PathLike`):
            A folder written by `save_pretrained` or a Trainer, or a Hub id `namespace/name` (an existing local
            path wins).
        revision (`str`, *optional*):
            For a Hub id: a branch, tag or commit sha (default: the main branch), resolved once to a commit sha.
        allow_pickle (`bool`, *optional*, defaults to `False`):
            UNSAFE: accept pickle weights when there are no safetensors. Only for sources you trust.
        token (`str` or `bool`, *optional*):
            For a private or gated Hub repository; defaults to `HF_TOKEN` or the stored login.
        cache_dir (`str`, *optional*):
            Where Hub downloads are cached.

    Returns:
        [`Suspect`]: the model (in eval mode) and where it came from.

    Example:

    ```python
    >>> from hf_ingrain.suspects import load_suspect
    >>> suspect = load_suspect("someone/suspect", revision="main")
    >>> suspect.commit_sha, suspect.model.config.num_labels
    ('9c1e...', 10)
    ```
    """
    path = os.fspath(path_or_id)
    if os.path.isdir(path):
        if revision is not None:
            raise ValueError(f"`revision` applies to Hub ids only, but {path!r} is a local folder; drop `revision`.")
        folder = os.path.abspath(path)
        return Suspect(_load_folder(folder, repr(path), allow_pickle), folder, sorted(os.listdir(folder)))
    if not is_hub_id(path):
        raise ValueError(
            f"No model at {path!r}: it is neither a local folder nor a Hub id. Pass a folder written by "
            "`save_pretrained` (or a Trainer's output_dir), or a Hub id `namespace/name`."
        )
    return _load_from_hub(path, revision, allow_pickle, token, cache_dir)


def resolve_revision(api, repo_id: str, revision: str | None):
    """`api.model_info(repo_id, revision)`: the commit a revision names (`.sha`) and its files, with the client's errors
    turned into messages that name the repository and the revision."""
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


def _load_from_hub(repo_id, revision, allow_pickle, token, cache_dir) -> Suspect:
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    api = HfApi(token=token)
    info = resolve_revision(api, repo_id, revision)
    sha = info.sha
    files = [s.rfilename for s in info.siblings or []] or api.list_repo_files(repo_id, revision=sha)
    where = f"{repo_id!r} at commit {sha}"
    if CONFIG_FILE not in files:
        raise ValueError(f"{where} has no config.json, so it is not a transformers model hf_ingrain can load.")
    _check_weights([f for f in files if "/" not in f], where, allow_pickle)  # refused before any download
    config_path = hf_hub_download(repo_id, CONFIG_FILE, revision=sha, token=token, cache_dir=cache_dir)
    with open(config_path, encoding="utf-8") as f:
        try:
            check_config_is_safe(json.load(f), where, files)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} has an unreadable config.json: {error}") from error
    wanted = selected_files(files, allow_pickle)
    folder = snapshot_download(repo_id, revision=sha, allow_patterns=wanted, token=token, cache_dir=cache_dir)
    model = _load_folder(folder, where, allow_pickle)
    return Suspect(model, folder, sorted(f for f in files if "/" not in f), repo_id, revision or "main", sha)


def load_model(path_or_id, revision: str | None = None, **kwargs) -> nn.Module:
    """[`load_suspect`]`(...).model`: the classifier alone."""
    return load_suspect(path_or_id, revision=revision, **kwargs).model


def load_or_train(folder: str, train) -> nn.Module:
    """The model saved in `folder` by an earlier run (through [`load_model`]: safetensors only), or `train()`'s model,
    saved there first (atomically: a run stopped while saving leaves no half-written folder to load next time)."""
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return load_model(folder)
    model = train()
    with atomic_folder(folder, replace=True) as staging:
        model.save_pretrained(staging, safe_serialization=True)
    return model


def resolve_model(model, revision: str | None = None, **kwargs):
    r"""
    Turns what the caller names as the suspect into something [`collect_scores`] can query.

    Args:
        model (`nn.Module`, `str`, `transformers.Pipeline` or callable):
            A model, a pipeline or a callable is returned as is; a string or path goes through [`load_model`]
            (a local folder or a Hub id: safetensors weights, no repository code, one commit).
        revision (`str`, *optional*): for a Hub id, the revision to load.
        **kwargs: `allow_pickle`, `token`, `cache_dir` for [`load_suspect`].
    """
    if isinstance(model, (str, os.PathLike)):
        return load_model(model, revision=revision, **kwargs)
    if revision is not None:
        raise ValueError(f"`revision` applies to Hub ids only, not to a {type(model).__name__}; drop `revision`.")
    return model
