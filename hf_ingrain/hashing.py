"""The one way this package hashes tensors and metadata: safetensors bytes and canonical JSON, the same bytes for the
same content on every machine (the key commitment and the recipes' weight digests use them)."""

import hashlib
import json

from safetensors.torch import save


def canonical_json(value) -> bytes:
    """JSON with sorted keys and no whitespace: the same bytes for the same content."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def tensors_bytes(tensors: dict) -> bytes:
    """The safetensors serialization of `tensors` (names, dtypes, shapes and data; a private copy of each tensor, so
    shared or strided storage is fine)."""
    return save({name: tensor.detach().cpu().clone().contiguous() for name, tensor in tensors.items()})


def tensors_sha256(tensors: dict) -> str:
    """SHA-256 hex digest of [`tensors_bytes`]: equal for bit-identical tensors with the same names."""
    return hashlib.sha256(tensors_bytes(tensors)).hexdigest()
