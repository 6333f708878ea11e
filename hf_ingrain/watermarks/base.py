"""What the keys of every baseline scheme share: secret tensors and JSON metadata, saved atomically, and a commitment.

A scheme's key subclasses [`SchemeKey`] and says three things: its tensors, its metadata, and how to rebuild itself
from both. Saving, loading and the commitment then work like [`WatermarkKey`]'s: the folder is written under a
temporary name and renamed when complete, and the commitment is a SHA-256 over a secret salt, the metadata and every
tensor byte, so it can be published and any changed byte of the key changes it.
"""

import hashlib
import json
import os

import torch
from safetensors.torch import load_file, save_file

from ..keys import write_secret_folder

KEY_FILE = "key.json"
TENSORS_FILE = "key.safetensors"
SCHEMA_VERSION = 1
SCHEMES: dict[str, type] = {}
"""Scheme name -> key class, filled as the scheme modules are imported."""


def draw_seed_and_salt(seed: int | None) -> tuple[int, torch.Generator, bytes]:
    """The key's seed (from the OS when `None`), a generator seeded with it, and a 32-byte salt drawn from it."""
    import secrets

    seed = secrets.randbits(62) if seed is None else int(seed)
    generator = torch.Generator().manual_seed(seed)
    salt = torch.randint(0, 256, (32,), generator=generator, dtype=torch.uint8).numpy().tobytes()
    return seed, generator, salt


class SchemeKey:
    """Base class of the baseline schemes' keys (see the module docstring). Subclasses set `scheme`."""

    scheme: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.scheme:
            SCHEMES[cls.scheme] = cls

    # subclasses provide these three
    def _tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _metadata(self) -> dict:
        raise NotImplementedError

    @classmethod
    def _from_saved(cls, tensors: dict, metadata: dict, salt: bytes) -> "SchemeKey":
        raise NotImplementedError

    def _full_metadata(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "scheme": self.scheme, "salt": self.salt.hex(), **self._metadata()}

    def save(self, save_directory: str) -> None:
        """Saves the key (secret!) as `key.json` and `key.safetensors` in a new folder, atomically."""

        def write(folder):
            with open(os.path.join(folder, KEY_FILE), "w") as f:
                json.dump(self._full_metadata(), f, indent=2, sort_keys=True)
            save_file({k: v.contiguous() for k, v in self._tensors().items()}, os.path.join(folder, TENSORS_FILE))

        write_secret_folder(save_directory, write)

    @classmethod
    def load(cls, save_directory: str) -> "SchemeKey":
        """Loads a key saved with [`~SchemeKey.save`]; `SchemeKey.load` picks the scheme from the folder."""
        metadata = read_key_metadata(save_directory)
        scheme = metadata.get("scheme")
        if scheme not in SCHEMES:
            raise ValueError(f"{save_directory!r} holds no baseline scheme key (scheme {scheme!r}).")
        if cls.scheme and scheme != cls.scheme:
            raise ValueError(
                f"{save_directory!r} holds a {scheme!r} key, not a {cls.scheme!r} key; "
                f"use {SCHEMES[scheme].__name__}.load."
            )
        if metadata.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"Unsupported key schema version {metadata.get('schema_version')}.")
        tensors = load_file(os.path.join(save_directory, TENSORS_FILE))
        return SCHEMES[scheme]._from_saved(tensors, metadata, bytes.fromhex(metadata["salt"]))

    def commitment(self) -> str:
        """SHA-256 hex digest over the salt, the metadata and every tensor byte: publishable, reveals nothing."""
        digest = hashlib.sha256()
        digest.update(f"hf_ingrain-{self.scheme}-key-v{SCHEMA_VERSION}\0".encode())
        digest.update(self.salt)
        digest.update(json.dumps(self._full_metadata(), sort_keys=True).encode())
        tensors = self._tensors()
        for name in sorted(tensors):
            tensor = tensors[name].detach().cpu().contiguous()
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        return digest.hexdigest()

    def __repr__(self) -> str:  # never print secret material
        return f"{type(self).__name__}(scheme={self.scheme!r}, commitment={self.commitment()[:12]}...)"


def read_key_metadata(save_directory: str) -> dict:
    path = os.path.join(save_directory, KEY_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"No key in {save_directory!r}: {KEY_FILE} is missing.")
    with open(path) as f:
        return json.load(f)
