"""Saving an attacked model with a card that records the attack (the target is loaded with
[`hf_ingrain.suspects.load_model`], like every model that is not the caller's own)."""

import logging
import os

from ..files import atomic_folder
from ..hub.model_card import CARD_FILE, attacked_model_card

logger = logging.getLogger(__name__)


def save_attacked_model(model, output_dir: str, attack: str, parameters: dict, source: str) -> str:
    """Saves `model` (safetensors) and its card into the new folder `output_dir`, written whole or not at all.

    Returns:
        `str`: the absolute path of the folder.
    """
    with atomic_folder(output_dir, what="the attacked model") as staging:
        model.save_pretrained(staging, safe_serialization=True)
        attacked_model_card(attack, parameters, source).save(os.path.join(staging, CARD_FILE))
    logger.info("Saved the %s-attacked model to %s", attack, output_dir)
    return os.path.abspath(output_dir)
