"""The owner's secrets: [`WatermarkKey`] (carriers, labels and the ingrainer) and the base class every key shares.

A key never leaves the owner: it is saved to a private folder, and only its commitment (a SHA-256 hash, see
[`SecretKey.commitment`]) is published with a model.
"""

from .base import FORMAT_VERSION, KEY_FILE, SALT_BYTES, SCHEMES, SecretKey, check_key_outside, read_key_metadata
from .watermark_key import INGRAINER_DIR, TENSORS_FILE, WatermarkKey

__all__ = [
    "FORMAT_VERSION",
    "INGRAINER_DIR",
    "KEY_FILE",
    "SALT_BYTES",
    "SCHEMES",
    "SecretKey",
    "TENSORS_FILE",
    "WatermarkKey",
    "check_key_outside",
    "read_key_metadata",
]
