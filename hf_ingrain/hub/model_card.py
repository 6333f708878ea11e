"""Model cards for watermarked models: the `watermark` metadata block and the card rendered from its Jinja template.

The card is rendered with `huggingface_hub.ModelCard.from_template` from `hf_ingrain/templates/ingrain_model_card.md`
(shipped inside the package, so an installed `hf_ingrain` renders it too). Its YAML header carries a `watermark`
block that backs a later claim of ownership:

```yaml
watermark:
  schema_version: 5
  scheme: ingrain
  paper: https://huggingface.co/papers/1906.06046
  library: hf_ingrain
  library_version: 0.2.0
  protocol: ingrain
  parameters: {ingrain_temperature: 4.0, ingrain_lambda: 0.5, alpha: 1.0e-06, num_queries: 1000, num_labels: 10}
  key_commitment: 3b1f...          # WatermarkKey.commitment(): SHA-256, binds the key without revealing it
  queries: {digest: 9a0c..., ordered_digest: 51e7..., num_queries: 1000,   # the committed query set (data.query_set)
            test: {protocol: ingrain, alpha: 1.0e-06, max_queries: null, ladder: null}}   # and test (data.committed_test)
  verification: {verified: true, agreement: 0.45, null_rate: 0.196, p_value: 3.3e-10, num_queries: 1000, ...}
  timestamp: {file: commitment.tsr, tsa: /O=Some TSA/CN=..., time: '2025-03-01T12:00:00.000+00:00'}   # or null
  training_strength: {agreement: 0.44, predicted_p_value: 2e-11, takes: true, ...}   # IngrainTrainer's, or null
```

`timestamp` names the RFC 3161 token of the commitment that the repository publishes beside the card (see
[`hf_ingrain.hub.timestamps`]): the date a third party can check, which a claim of ownership needs. The TSA and time
written here are what the token says; a verifier reads them from the token, never from the card.

It never holds the key itself: no carrier, carrier label, ingrainer weight, salt or seed. [`save_watermark_card`]
writes the card and the same block as `watermark.json` into a model folder; [`attacked_model_card`] is the card of a
model produced by a removal attack.
"""

import importlib.metadata
import json
import logging
import os

from huggingface_hub import ModelCard, ModelCardData

from ..data.committed_test import SCORES_PROTOCOLS, committed_test, read_committed_test
from ..files import write_text
from ..verification import format_p_value

logger = logging.getLogger(__name__)

WATERMARK_SCHEMA_VERSION = 5  # 2: the committed query set (`queries`); 3: the commitment's timestamp (`timestamp`);
# 4: the committed test (`queries.test`: protocol, alpha, budget, ladder; hf_ingrain.data.committed_test);
# 5: the watermark's strength at the end of training (`training_strength`, hf_ingrain.trainer.strength)
TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
TEMPLATE_PATH = os.path.join(TEMPLATES, "ingrain_model_card.md")
ATTACKED_TEMPLATE_PATH = os.path.join(TEMPLATES, "attacked_model_card.md")
CARD_FILE = "README.md"
WATERMARK_FILE = "watermark.json"
INGRAIN_TAGS = ["hf_ingrain", "ingrain", "watermark"]
"""Hub tags of every ingrain-watermarked model (also `IngrainTrainer._tag_names`)."""
ATTACK_TAGS = ["hf_ingrain", "watermark-removal-attack"]
PAPER_URL = "https://huggingface.co/papers/1906.06046"
FRAMEWORKS = ("hf_ingrain", "transformers", "torch", "huggingface_hub", "safetensors", "datasets")
# every key the `watermark` block may hold; a test checks that nothing else (no key material) gets in
WATERMARK_FIELDS = (
    "schema_version", "scheme", "paper", "library", "library_version", "protocol", "parameters", "key_commitment",
    "queries", "verification", "timestamp", "training_strength",
)
TIMESTAMP_FIELDS = ("file", "tsa", "time")
# where the trainer's strength measurement took its examples (`training_strength.source`), and how the card names them
STRENGTH_SOURCES = {"strength_dataset": "held-out", "eval_dataset": "evaluation", "train_dataset": "training"}
VERIFICATION_FIELDS = ("verified", "agreement", "null_rate", "p_value", "num_queries", "num_agreements", "alpha")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def library_version() -> str:
    """The installed version of hf_ingrain (read through `importlib.metadata`)."""
    version = _version("hf_ingrain")
    if version == "not installed":  # running from a source tree that was never installed
        from .. import __version__

        version = __version__
    return version


def framework_versions() -> dict:
    """`{name: version}` of hf_ingrain and the libraries a reader needs to reproduce the model."""
    return {name: (library_version() if name == "hf_ingrain" else _version(name)) for name in FRAMEWORKS}


def _queries_block(queries: dict) -> dict:
    block = {"digest": str(queries["digest"]), "num_queries": int(queries["num_queries"])}
    if queries.get("ordered_digest"):
        block["ordered_digest"] = str(queries["ordered_digest"])
    test = read_committed_test(queries)  # checked: the card publishes only a test the verification can run
    if test is not None:
        block["test"] = test
    return block


def watermark_metadata(
    key=None,
    result=None,
    ingrain_lambda: float | None = None,
    ingrain_temperature: float | None = None,
    version: str | None = None,
    queries: dict | None = None,
    timestamp: dict | None = None,
    training_strength: dict | None = None,
) -> dict:
    r"""
    The `watermark` block of a model card: scheme, protocol and parameters, the key's commitment and the result of
    verification at publication. Nothing in it reveals the key.

    Args:
        key ([`WatermarkKey`], *optional*):
            The owner's key; only its [`~WatermarkKey.commitment`] and its number of labels are recorded.
        result ([`VerificationResult`], *optional*):
            The verification run at publication.
        ingrain_lambda (`float`, *optional*):
            The `ingrain_lambda` the model was trained with, if known.
        ingrain_temperature (`float`, *optional*):
            The `ingrain_temperature` the model was trained with, if known.
        version (`str`, *optional*):
            hf_ingrain's version (defaults to the installed one).
        queries (`dict`, *optional*):
            The committed benign query set, `{"digest", "ordered_digest", "num_queries"}` (the order where known: it
            fixes what a query budget sends); defaults to the one the key commits to
            ([`~WatermarkKey.commit_queries`]), else the set the recorded verification used. Its `test` is the one
            committed with it, else the recorded verification's (see `hf_ingrain.data.committed_test`).
        timestamp (`dict`, *optional*):
            The RFC 3161 timestamp of the commitment published beside the card, `{"file", "tsa", "time"}`
            ([`~hf_ingrain.hub.timestamps.TimestampInfo.to_block`]).
        training_strength (`dict`, *optional*):
            The watermark's strength measured by `IngrainTrainer` at the end of training
            ([`~hf_ingrain.trainer.strength.WatermarkStrength.to_dict`]).

    Returns:
        `dict`: the block, with `None` for what is unknown.
    """
    parameters = {
        "ingrain_temperature": None if ingrain_temperature is None else float(ingrain_temperature),
        "ingrain_lambda": None if ingrain_lambda is None else float(ingrain_lambda),
        "alpha": None if result is None else float(result.alpha),
        "num_queries": None if result is None else int(result.num_queries),
        "num_labels": None if key is None else int(key.num_labels),
    }
    verification = None
    if result is not None:
        verification = {
            "verified": bool(result.verified),
            "agreement": float(result.agreement),
            "null_rate": float(result.null_rate),
            "p_value": float(result.p_value),
            "num_queries": int(result.num_queries),
            "num_agreements": int(result.num_agreements),
            "alpha": float(result.alpha),
        }
    if queries is None and key is not None and getattr(key, "committed_queries", None):
        queries = key.committed_queries
    if queries is None and result is not None and getattr(result, "query_digest", None):
        queries = {"digest": result.query_digest, "num_queries": int(result.num_queries)}
    reads_scores = result is not None and result.protocol in SCORES_PROTOCOLS
    if queries is not None and not queries.get("test") and reads_scores:
        queries = {**queries, "test": committed_test(result.protocol, result.alpha)}  # the test run at publication
    return {
        "schema_version": WATERMARK_SCHEMA_VERSION,
        "scheme": "ingrain",
        "paper": PAPER_URL,
        "library": "hf_ingrain",
        "library_version": version or library_version(),
        "protocol": result.protocol if result is not None else "ingrain",
        "parameters": parameters,
        "key_commitment": None if key is None else key.commitment(),
        "queries": None if queries is None else _queries_block(queries),
        "verification": verification,
        "timestamp": None if timestamp is None else {name: str(timestamp[name]) for name in TIMESTAMP_FIELDS},
        "training_strength": None if training_strength is None else _strength_block(training_strength),
    }


def _strength_block(strength: dict) -> dict:
    numbers = ("agreement", "null_rate", "reference_agreement", "margin", "predicted_p_value", "p_value",
               "scores_p_value")
    block = {name: None if strength.get(name) is None else float(strength[name]) for name in numbers}
    block.update({name: strength.get(name) for name in ("num_queries", "budget", "source", "step")})
    block["takes"] = bool(strength.get("takes"))
    return block


def render_model_card(
    watermark: dict,
    model_name: str,
    repo_id: str | None = None,
    tags: list[str] | None = None,
    pipeline_tag: str | None = None,
    template_path: str | None = None,
    versions: dict | None = None,
) -> ModelCard:
    r"""
    Renders the model card of a watermarked model from its Jinja template.

    Args:
        watermark (`dict`):
            The `watermark` block, from [`watermark_metadata`].
        model_name (`str`):
            The title of the card.
        repo_id (`str`, *optional*):
            The repository the card is published in (used in the verification commands); defaults to `model_name`.
        tags (`list[str]`, *optional*):
            Hub tags; [`INGRAIN_TAGS`] are always added.
        pipeline_tag (`str`, *optional*):
            The Hub task, e.g. `"image-classification"`.
        template_path (`str`, *optional*):
            Another Jinja template; defaults to `hf_ingrain/templates/ingrain_model_card.md`.
        versions (`dict`, *optional*):
            `{library: version}` for the "Framework versions" section; defaults to [`framework_versions`].

    Returns:
        `huggingface_hub.ModelCard`: `str(card)` is the README; `card.save(path)` writes it.

    Example:

    ```python
    >>> from hf_ingrain.hub.model_card import render_model_card, watermark_metadata
    >>> card = render_model_card(watermark_metadata(key, result), model_name="my-model", repo_id="me/my-model")
    >>> card.data.watermark["key_commitment"] == key.commitment()
    True
    ```
    """
    unknown = sorted(set(watermark) - set(WATERMARK_FIELDS))
    if unknown:
        raise ValueError(f"Unknown fields {unknown} in the watermark block; it may hold only {list(WATERMARK_FIELDS)}.")
    all_tags = list(INGRAIN_TAGS)
    all_tags += [tag for tag in (tags or []) if tag not in all_tags]
    verification = watermark.get("verification")
    card_data = ModelCardData(
        library_name="transformers", pipeline_tag=pipeline_tag, tags=all_tags, watermark=watermark
    )
    return ModelCard.from_template(
        card_data,
        template_path=template_path or TEMPLATE_PATH,
        model_name=model_name,
        repo_id=repo_id or model_name,
        library_version=watermark.get("library_version"),
        commitment=watermark.get("key_commitment"),
        queries=watermark.get("queries"),
        protocol=watermark.get("protocol"),
        verification=verification,
        timestamp=watermark.get("timestamp"),
        training_strength=watermark.get("training_strength"),
        strength_sources=STRENGTH_SOURCES,
        p_value=format_p_value(verification["p_value"], relation=False) if verification else None,
        framework_versions=versions if versions is not None else framework_versions(),
    )


def merge_trainer_card(card: ModelCard, trainer_card: ModelCard) -> ModelCard:
    r"""
    The watermark card with what `Trainer.create_model_card` wrote: the trainer's metadata where the watermark card
    has none (base model, datasets, metrics, model-index, license, language), the union of the tags, and the
    trainer's text (results, hyperparameters) as a "Training" section. The watermark block is the watermark card's.
    """
    ours, theirs = card.data.to_dict(), trainer_card.data.to_dict()
    theirs.pop("watermark", None)
    merged = {**theirs, **{k: v for k, v in ours.items() if v is not None}}
    tags = list(ours.get("tags") or [])
    merged["tags"] = tags + [tag for tag in theirs.get("tags") or [] if tag not in tags]
    lines = [line for line in trainer_card.text.strip().splitlines() if not line.startswith("<!--")]
    lines = [line for line in lines if not line.startswith("# ")]  # its title: the watermark card has one
    body = "\n".join("#" + line if line.startswith("#") else line for line in lines).strip()
    text = card.text.rstrip() + "\n\n## Training\n\nWhat the `Trainer` recorded.\n\n" + body + "\n"
    return ModelCard(f"---\n{ModelCardData(**merged).to_yaml()}\n---\n{text}")


def read_watermark_metadata(card_path: str) -> dict | None:
    """The `watermark` block of a model card file (`README.md`), or `None` if the card has none or cannot be read."""
    try:
        card = ModelCard.load(card_path, ignore_metadata_errors=True)
    except Exception as error:  # a malformed card is reported, never trusted
        logger.warning("Could not read the model card %s: %s", card_path, error)
        return None
    block = card.data.to_dict().get("watermark")
    return block if isinstance(block, dict) else None


def pipeline_tag(config) -> str | None:
    """The Hub task of a classifier's config (`"image-classification"`, `"text-classification"`, ...), if known."""
    architectures = " ".join(getattr(config, "architectures", None) or [])
    for suffix, tag in (
        ("ImageClassification", "image-classification"),
        ("SequenceClassification", "text-classification"),
        ("AudioClassification", "audio-classification"),
    ):
        if suffix in architectures:
            return tag
    return None


def save_watermark_card(
    folder: str,
    model=None,
    key=None,
    result=None,
    *,
    model_name: str | None = None,
    repo_id: str | None = None,
    tags: list[str] | None = None,
    ingrain_lambda: float | None = None,
    ingrain_temperature: float | None = None,
    queries: dict | None = None,
    timestamp: dict | None = None,
    trainer_card: ModelCard | None = None,
    training_strength: dict | None = None,
):
    r"""
    Writes the model card (`README.md`) and `watermark.json` of a watermarked model into `folder`, each atomically.

    Args:
        folder (`str`): where to write them (created if needed).
        model (`PreTrainedModel`, *optional*): the model; its config gives the card's pipeline tag.
        key ([`WatermarkKey`], *optional*): the owner's key; only its commitment is written.
        result ([`VerificationResult`], *optional*): the verification at publication.
        model_name (`str`, *optional*): the card's title; defaults to the repository name or the folder name.
        repo_id (`str`, *optional*): the repository the card is for.
        tags (`list[str]`, *optional*): extra Hub tags.
        ingrain_lambda (`float`, *optional*): training parameter to record.
        ingrain_temperature (`float`, *optional*): training parameter to record.
        queries (`dict`, *optional*): the committed query set (see [`watermark_metadata`]).
        timestamp (`dict`, *optional*): the commitment's RFC 3161 timestamp published beside the card (see
            [`watermark_metadata`]); the token file itself is the caller's to write.
        trainer_card (`huggingface_hub.ModelCard`, *optional*): the card `Trainer.create_model_card` wrote; its
            metadata (base model, datasets, metrics, model-index, license, language, tags) and its text are merged
            in (see [`merge_trainer_card`]).
        training_strength (`dict`, *optional*): the strength at the end of training (see [`watermark_metadata`]).

    Returns:
        `huggingface_hub.ModelCard`: the card written.
    """
    if isinstance(tags, str):
        tags = [tags]
    watermark = watermark_metadata(
        key, result, ingrain_lambda, ingrain_temperature, queries=queries, timestamp=timestamp,
        training_strength=training_strength,
    )
    if key is None:
        logger.warning("No key given: the model card carries no commitment, so it cannot back a claim of ownership.")
    name = model_name or (repo_id.split("/")[-1] if repo_id else os.path.basename(os.path.abspath(folder)))
    card = render_model_card(
        watermark, model_name=name, repo_id=repo_id, tags=tags, pipeline_tag=pipeline_tag(getattr(model, "config", None))
    )
    if trainer_card is not None:
        card = merge_trainer_card(card, trainer_card)
    write_text(os.path.join(folder, CARD_FILE), str(card))
    write_text(os.path.join(folder, WATERMARK_FILE), json.dumps(watermark, indent=2) + "\n")
    return card


def attacked_model_card(attack: str, parameters: dict, source: str) -> ModelCard:
    """The card of a model produced by a removal attack: which attack, from which source, with which parameters."""
    card_data = ModelCardData(library_name="transformers", tags=[*ATTACK_TAGS, attack])
    return ModelCard.from_template(
        card_data, template_path=ATTACKED_TEMPLATE_PATH, attack=attack, source=source, parameters=parameters,
        versions={name: version for name, version in framework_versions().items() if version != "not installed"},
    )
