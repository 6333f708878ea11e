"""Loading the attacker's target, and saving an attacked model with a card that records the attack."""

import logging
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version

from huggingface_hub import ModelCard, ModelCardData

logger = logging.getLogger(__name__)

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ attack }} attack on `{{ source }}`

This model is the output of a watermark-removal attack run with
[hf_ingrain](https://huggingface.co/papers/1906.06046) to test whether the source model's watermark survives it.
It is an attacked copy for evaluation, not a new model: it inherits the source model's licence and provenance.

| parameter | value |
|---|---|
{% for name, value in parameters.items() -%}
| {{ name }} | {{ value }} |
{% endfor %}
## Framework versions

{% for name, value in versions.items() -%}
- {{ name }}: {{ value }}
{% endfor %}"""


def load_model(path_or_id: str, revision: str | None = None):
    """Loads a classifier from a local folder or a Hub id (safetensors weights only, never repository code)."""
    from ..verification import _load_model

    try:
        return _load_model(path_or_id, revision=revision)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if os.path.isdir(path_or_id):
            raise ValueError(
                f"Could not load a classifier from the folder {path_or_id!r} ({reason}). It must hold config.json and "
                "model.safetensors, as written by `save_pretrained`."
            ) from error
        raise ValueError(
            f"No model at {path_or_id!r}: it is not a local folder, and loading it as a Hub id failed ({reason}). "
            "Pass a folder written by `save_pretrained`, or a Hub model id."
        ) from error


def _versions() -> dict:
    found = {}
    for package in ("hf_ingrain", "transformers", "torch", "huggingface_hub"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def attacked_model_card(attack: str, parameters: dict, source: str) -> ModelCard:
    """A model card recording which attack produced the model, from which source, with which parameters."""
    card_data = ModelCardData(
        library_name="transformers", tags=["hf_ingrain", "watermark-removal-attack", attack]
    )
    return ModelCard.from_template(
        card_data, template_str=CARD_TEMPLATE, attack=attack, source=source, parameters=parameters, versions=_versions()
    )


def check_output_dir(output_dir: str) -> str:
    """Refuses an output folder that exists and is not empty (call it before long work); returns its absolute path."""
    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or os.listdir(output_dir)):
        raise ValueError(f"{output_dir!r} exists and is not an empty folder; choose a new output folder.")
    return output_dir


def save_attacked_model(model, output_dir: str, attack: str, parameters: dict, source: str) -> str:
    """Saves `model` (safetensors) and its card into the new folder `output_dir`, written whole or not at all.

    Returns:
        `str`: the absolute path of the folder.
    """
    output_dir = check_output_dir(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".attacked-", dir=parent)
    try:
        model.save_pretrained(staging, safe_serialization=True)
        attacked_model_card(attack, parameters, source).save(os.path.join(staging, "README.md"))
        if os.path.exists(output_dir):
            os.rmdir(output_dir)
        os.replace(staging, output_dir)
        os.chmod(output_dir, 0o755)  # mkdtemp's folders are private; a model folder is not
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("Saved the %s-attacked model to %s", attack, output_dir)
    return output_dir
