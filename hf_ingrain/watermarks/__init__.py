"""Baseline watermarking schemes, to compare ingrain against: trigger sets (Zhang et al. 2018, Adi et al. 2018) and
a weight signature (Uchida et al. 2017). Each has a key that saves, loads and commits like [`WatermarkKey`], and a
verify function that returns a [`VerificationResult`]."""

from .adi import AdiKey
from .base import SchemeKey, read_key_metadata
from .trigger_set import TriggerSetKey, embed_trigger_set, mix_trigger_set, verify_trigger_set
from .uchida import UchidaConfig, UchidaKey, UchidaTrainer, extract_bits, signature_loss, verify_uchida
from .zhang import ZhangKey


def load_key(save_directory: str):
    """Loads any key saved by this package: a [`WatermarkKey`] or a baseline scheme's key, by what the folder holds."""
    from ..keys import WatermarkKey

    if "scheme" in read_key_metadata(save_directory):
        return SchemeKey.load(save_directory)
    return WatermarkKey.load(save_directory)


__all__ = [
    "AdiKey",
    "SchemeKey",
    "TriggerSetKey",
    "UchidaConfig",
    "UchidaKey",
    "UchidaTrainer",
    "ZhangKey",
    "embed_trigger_set",
    "extract_bits",
    "load_key",
    "mix_trigger_set",
    "signature_loss",
    "verify_trigger_set",
    "verify_uchida",
]
