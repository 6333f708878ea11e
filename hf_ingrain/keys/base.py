r"""
What every secret key of this package shares, the ingrain key and the baselines' keys alike: secret tensors, JSON
metadata and frozen models, saved atomically into a private folder, and a commitment that can be published.

A key subclasses [`SecretKey`] and says four things: its `scheme`, its tensors, its metadata, and how to rebuild
itself from them; a key holding models (the ingrainer) also lists them. Saving, loading and the commitment then work
the same for every scheme:

- `save(folder)` writes `key.json` (metadata, with the scheme, the format version and the salt), the tensors as
  safetensors and each model as a `save_pretrained` subfolder, under a temporary name renamed when complete; the
  folder is readable by its owner only.
- `commitment()` is a SHA-256 over the format version, the secret salt, the canonical JSON of the metadata, the
  safetensors bytes of the tensors and, for each model, its class, its configuration (without the fields that
  saving adds or that change with the library version) and the safetensors bytes of its weights. Any change to
  anything that decides the key's choices changes it, and without the salt it reveals nothing.

Keys saved by hf_ingrain 0.1 (format 1) still load, and their commitment is still computed by the format-1 rule, so
a commitment published with a model then keeps matching the key that made it.
"""

import hashlib
import json
import logging
import os

import torch
from safetensors.torch import load_file, save_file

from ..files import atomic_folder
from ..hashing import canonical_json, tensors_bytes
from ..models import register_auto_classes

logger = logging.getLogger(__name__)

KEY_FILE = "key.json"
FORMAT_VERSION = 2
SALT_BYTES = 32
SCHEMES: dict[str, type] = {}
"""Scheme name -> key class, filled as the key classes are defined (`hf_ingrain.watermarks` defines the baselines)."""
# Fields of a model config that saving adds or that change with the library version: not part of the commitment.
# fields that say nothing of a classifier's outputs and that saving or loading may add or drop (`use_cache`: a
# Trainer sets it on a model's config, and `from_pretrained` does not restore it)
VOLATILE_CONFIG_FIELDS = ("transformers_version", "architectures", "dtype", "torch_dtype", "_name_or_path",
                          "_commit_hash", "use_cache")


def model_fingerprint(model) -> dict:
    """What decides a model's outputs besides its weights: its class and its configuration (canonical fields)."""
    config = getattr(model, "config", None)
    values = config.to_diff_dict() if config is not None else {}
    return {
        "class": type(model).__name__,
        "config": {k: v for k, v in values.items() if k not in VOLATILE_CONFIG_FIELDS},
    }


def check_key_outside(key_dir, output_dir, key_flag: str = "--key_dir", output_flag: str = "--output_dir") -> None:
    """Refuses a key folder and an output folder that contain one another: outputs are shared or published, the key
    must stay private. The flags name the two folders in the message."""
    key_dir, output_dir = os.path.abspath(os.fspath(key_dir)), os.path.abspath(os.fspath(output_dir))
    if os.path.commonpath([key_dir, output_dir]) in (key_dir, output_dir):
        raise ValueError(
            f"`{key_flag}` ({key_dir}) and `{output_flag}` ({output_dir}) must not contain one another: the output "
            "folder is shared or published, the key must stay private. Choose separate folders."
        )


def read_key_metadata(save_directory) -> dict:
    """The `key.json` of a key folder, with a clear error when there is none."""
    path = os.path.join(os.fspath(save_directory), KEY_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"No key in {os.fspath(save_directory)!r}: {KEY_FILE} is missing.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class SecretKey:
    r"""
    Base class of every key: see the module docstring. Subclasses set `scheme` and implement `_tensors`,
    `_metadata` and `_from_saved`; a key with models also implements `_models` and `_load_models`.

    Every key has `salt` (32 secret random bytes, for the commitment).
    """

    scheme: str = ""
    tensors_file: str = "key.safetensors"
    salt: bytes
    _format_1_metadata: dict | None = None  # key.json of a key loaded from format 1 (its commitment rule)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.scheme:
            SCHEMES[cls.scheme] = cls

    # ---------------------------------------------------------------------------------------- what a key says
    def _tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _metadata(self) -> dict:
        raise NotImplementedError

    def _models(self) -> dict:
        """Frozen models of the key, by subfolder name (e.g. `{"ingrainer": model}`)."""
        return {}

    @classmethod
    def _from_saved(cls, tensors: dict, metadata: dict, salt: bytes, models: dict) -> "SecretKey":
        raise NotImplementedError

    @classmethod
    def _load_models(cls, save_directory: str, metadata: dict) -> dict:
        return {}

    def _validate(self) -> None:
        """Refuses a key whose parts disagree (run on every loaded key); subclasses add their own checks."""
        if not isinstance(self.salt, bytes) or len(self.salt) != SALT_BYTES:
            raise ValueError(
                f"Invalid key: its salt has {len(self.salt)} bytes, not {SALT_BYTES} (`salt` in {KEY_FILE}). The key "
                "folder was changed or damaged; use the folder the key was saved to."
            )
        for name, tensor in self._tensors().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(f"Invalid key: `{name}` holds NaN or infinite values.")
        for folder, model in self._models().items():
            if model is not None and not all(torch.isfinite(p).all() for p in model.parameters()):
                raise ValueError(f"Invalid key: the weights in `{folder}/` hold NaN or infinite values.")

    # ---------------------------------------------------------------------------------------- storage
    def _saved_metadata(self) -> dict:
        return {"schema_version": FORMAT_VERSION, "scheme": self.scheme, "salt": self.salt.hex(), **self._metadata()}

    def save(self, save_directory) -> None:
        """Saves the key (secret!) into a new folder, atomically: `key.json`, the tensors, a subfolder per model.

        The folder is written under a temporary name and renamed when complete, so an interrupted save leaves
        nothing half-written behind; it is readable by its owner only.
        """
        if self._format_1_metadata is not None:
            logger.warning(
                "Saving a key loaded from format 1 writes format %d, whose commitment differs: keep the original folder "
                "for the models published with it (commitment %s).", FORMAT_VERSION, self.commitment()[:12],
            )
        with atomic_folder(save_directory, what="the key", private=True) as folder:
            with open(os.path.join(folder, KEY_FILE), "w", encoding="utf-8") as f:
                json.dump(self._saved_metadata(), f, indent=2, sort_keys=True)
            save_file({k: v.contiguous() for k, v in self._tensors().items()}, os.path.join(folder, self.tensors_file))
            for name, model in self._models().items():
                if model is not None:
                    model.save_pretrained(os.path.join(folder, name), safe_serialization=True)
            self._save_derived(folder)

    @classmethod
    def load(cls, save_directory) -> "SecretKey":
        """Loads a key saved with [`~SecretKey.save`], bit-identical; `SecretKey.load` picks the scheme itself."""
        save_directory = os.fspath(save_directory)
        metadata = read_key_metadata(save_directory)
        scheme = metadata.get("scheme", "ingrain")  # format-1 ingrain keys did not name their scheme
        if scheme not in SCHEMES:
            raise ValueError(
                f"{save_directory!r} holds a {scheme!r} key, a scheme this installation does not know (import "
                "hf_ingrain.watermarks for the baseline schemes, or load it with `hf_ingrain.watermarks.load_key`)."
            )
        key_class = SCHEMES[scheme]
        if cls.scheme and key_class is not cls:
            raise ValueError(
                f"{save_directory!r} holds a {scheme!r} key, not a {cls.scheme!r} key; use {key_class.__name__}.load."
            )
        version = metadata.get("schema_version")
        if version not in (1, FORMAT_VERSION):
            raise ValueError(
                f"{save_directory!r} holds a key of format {version}; this version of hf_ingrain reads formats 1 and "
                f"{FORMAT_VERSION}. Upgrade hf_ingrain."
            )
        tensors = load_file(os.path.join(save_directory, key_class.tensors_file))
        models = key_class._load_models(save_directory, metadata)
        key = key_class._from_saved(tensors, metadata, bytes.fromhex(metadata["salt"]), models)
        if version == 1:
            key._format_1_metadata = metadata
        key._validate()
        key._load_derived(save_directory)
        return key

    def _save_derived(self, folder: str) -> None:
        """Writes what the scheme derives from the key and keeps beside it (outside the commitment); nothing here."""

    def _load_derived(self, folder: str) -> None:
        """Reads what [`_save_derived`] wrote; nothing here."""

    # ---------------------------------------------------------------------------------------- commitment
    def commitment(self) -> str:
        """SHA-256 hex digest binding everything that decides the key's choices (see the module docstring).

        Any changed byte of the key changes it, and it reveals nothing about the key (the salt is secret and
        random), so it can be published with a model and checked later against the key the owner produces.
        """
        if self._format_1_metadata is not None:
            return self._format_1_commitment()
        digest = hashlib.sha256()
        digest.update(f"hf_ingrain-key-v{FORMAT_VERSION}\0".encode())
        digest.update(self.salt)
        digest.update(canonical_json(self._saved_metadata()))
        digest.update(tensors_bytes(self._tensors()))
        for name, model in sorted(self._models().items()):
            if model is not None:
                digest.update(f"\0model:{name}\0".encode())
                digest.update(canonical_json(model_fingerprint(model)))
                digest.update(tensors_bytes(model.state_dict()))
        return digest.hexdigest()

    def _format_1_commitment(self) -> str:
        """The rule of hf_ingrain 0.1, for keys loaded from that format."""
        digest = hashlib.sha256()
        domain = "hf_ingrain-key-v1" if self.scheme == "ingrain" else f"hf_ingrain-{self.scheme}-key-v1"
        digest.update(f"{domain}\0".encode())
        digest.update(self.salt)
        digest.update(json.dumps(self._format_1_metadata, sort_keys=True).encode())
        tensors = dict(self._tensors())
        for prefix, model in self._models().items():
            if model is not None:
                tensors.update({f"{prefix}.{k}": v for k, v in model.state_dict().items()})
        for name in sorted(tensors):
            tensor = tensors[name].detach().cpu().contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:  # never print secret material
        return f"{type(self).__name__}(scheme={self.scheme!r}, commitment={self.commitment()[:12]}...)"


def load_ingrainer_folders(save_directory: str, images: bool, ingrainer_dir: str, references_dir: str) -> dict:
    """A saved key's ingrainers by folder (`ingrainer/`, `references/<i>/`), frozen and in eval mode: safetensors
    only, never the folder's code."""
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

    register_auto_classes()  # a default ingrainer is one of the package's small models
    auto = AutoModelForImageClassification if images else AutoModelForSequenceClassification
    folders = [ingrainer_dir] if os.path.isdir(os.path.join(save_directory, ingrainer_dir)) else []
    references = os.path.join(save_directory, references_dir)
    if os.path.isdir(references):
        folders += [f"{references_dir}/{name}" for name in sorted(os.listdir(references), key=int)]
    models = {}
    for folder in folders:
        model = auto.from_pretrained(
            os.path.join(save_directory, folder), use_safetensors=True, trust_remote_code=False
        ).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        models[folder] = model
    return models


def software_versions() -> dict:
    """The versions a key's training depends on, recorded with it: a re-derivation is bit for bit under the same."""
    import transformers

    from .. import __version__

    return {"hf_ingrain": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
