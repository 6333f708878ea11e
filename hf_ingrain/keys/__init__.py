"""The owner's secrets: [`WatermarkKey`] (carriers, labels and the ingrainer) and the base class every key shares.

A key never leaves the owner: it is saved to a private folder, and only its commitment (a SHA-256 hash, see
[`SecretKey.commitment`]) is published with a model. In a dispute the key is shown, and [`audit_key`] lets a third
party re-derive every ingrainer of it from its seed, its recipe and its benign data.
"""

from .audit import KeyAudit, audit_key, rederive_ingrainer
from .base import FORMAT_VERSION, KEY_FILE, SALT_BYTES, SCHEMES, SecretKey, check_key_outside, read_key_metadata
from .watermark_key import INGRAINER_DIR, TENSORS_FILE, WatermarkKey

__all__ = [
    "FORMAT_VERSION",
    "INGRAINER_DIR",
    "KeyAudit",
    "KEY_FILE",
    "SALT_BYTES",
    "SCHEMES",
    "SecretKey",
    "TENSORS_FILE",
    "WatermarkKey",
    "audit_key",
    "check_key_outside",
    "read_key_metadata",
    "rederive_ingrainer",
]
