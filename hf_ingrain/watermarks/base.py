"""What the keys of every baseline scheme share, on top of [`~hf_ingrain.keys.SecretKey`]: a seed and a salt drawn
from it, and verification by the scheme's own test.

A scheme's key subclasses [`SchemeKey`] and says three things: its tensors, its metadata, and how to rebuild itself
from both (`_tensors`, `_metadata`, `_from_saved`). Saving, loading and the commitment are [`SecretKey`]'s, the same
as [`WatermarkKey`]'s.
"""

import secrets

import torch

from ..keys import SALT_BYTES, SCHEMES, SecretKey, read_key_metadata  # noqa: F401 (SCHEMES, read_key_metadata: re-exported)


def draw_seed_and_salt(seed: int | None) -> tuple[int, torch.Generator, bytes]:
    """The key's seed (from the OS when `None`), a generator seeded with it, and a 32-byte salt from the OS (never from
    the seed: a seeded key reproduces its draws, not its commitment)."""
    seed = secrets.randbits(62) if seed is None else int(seed)
    generator = torch.Generator().manual_seed(seed)
    return seed, generator, secrets.token_bytes(SALT_BYTES)


class SchemeKey(SecretKey):
    """Base class of the baseline schemes' keys (see the module docstring). Subclasses set `scheme` and `verify`."""

    tensors_file = "key.safetensors"

    def verify(self, model, alpha: float, **kwargs):
        """The scheme's own test of `model` (see [`hf_ingrain.verify`])."""
        raise NotImplementedError
