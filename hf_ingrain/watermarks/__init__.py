"""Baseline watermarking schemes, to compare ingrain against: trigger sets (Zhang et al. 2018, Adi et al. 2018) and
a weight signature (Uchida et al. 2017). Each has a key that saves, loads and commits like [`WatermarkKey`] (they
share [`~hf_ingrain.keys.SecretKey`]), and a verify function that returns a [`VerificationResult`]."""

from ..keys import SecretKey
from ..losses import signature_loss
from ..trainer.uchida_config import UchidaConfig
from ..trainer.uchida_trainer import UchidaTrainer
from .adi import AdiKey
from .base import SchemeKey, read_key_metadata
from .trigger_set import TriggerSetKey, embed_trigger_set, mix_trigger_set, verify_trigger_set
from .uchida import UchidaKey, extract_bits, verify_uchida
from .zhang import ZhangKey


def load_key(save_directory):
    """Loads any key saved by this package, the ingrain [`WatermarkKey`] or a baseline scheme's, by what the folder
    holds."""
    return SecretKey.load(save_directory)


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
    "read_key_metadata",
    "signature_loss",
    "verify_trigger_set",
    "verify_uchida",
]
