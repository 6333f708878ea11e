r"""
Trigger sets, the classic black-box watermark: secret inputs with labels the model is trained to return.

[`ZhangKey`] (Zhang et al. 2018) and [`AdiKey`] (Adi et al. 2018) draw the trigger set; [`mix_trigger_set`] and
[`embed_trigger_set`] embed it by training with the trigger set mixed into the owner's data; [`verify_trigger_set`]
tests a suspect on it, from labels alone.

## The test and its null rate
The statistic is the number of triggers on which the suspect returns the trigger label. Its null rate is the
largest of:

- `uniform` = `1 / K`. This is exact when the trigger labels were drawn uniformly at random, independently of the
  trigger images (Adi et al.): whatever a model not derived from the key answers, each trigger agrees with
  probability `1 / K`, independently of the others.
- `controls`: when the key has control inputs (the owner images the triggers were made from, before the trigger was
  applied), the suspect's rate of returning the trigger label on them. It stops a model that returns the target
  class for everything from verifying.

Caveat, for a single target label (Zhang et al.): the agreements then share one label, so they are not independent
coins, and a model not derived from the key whose natural confusion happens to send noisy or unrelated images to the
target class (about one chance in `K` over the key's draw of the target) agrees on most triggers. The binomial
p-value is the one the paper reports, not a bound with the guarantee of `alpha`; prefer random labels (Adi et al.)
or the ingrain protocol for a claim. [`verify_trigger_set`] warns on such a key and sets `details["single_target"]`.
Measured: a rule that sends every image that is not a clean digit to the target (it never saw a key) verifies on the
noise and unrelated kinds at p = 1e-50 (`tests/test_watermarks.py`); in the full-MNIST benchmark the noise and the
unrelated keys of a seed verify the models of the other two kinds, which share their target label, in every seed
(`docs/benchmark/full_mnist_attacks_3seeds/`, false claims).
"""

import logging
import warnings

import torch

from ..suspects import collect_scores, resolve_model, restrict_scores
from ..verification import DEFAULT_ALPHA, VerificationResult
from .base import SchemeKey

logger = logging.getLogger(__name__)


class TriggerSetKey(SchemeKey):
    r"""
    A trigger set: inputs, the labels the watermarked model must return on them, and optional control inputs.

    Build one with [`ZhangKey.generate`] or [`AdiKey.generate`]; save, load and commit like [`WatermarkKey`].

    Args:
        inputs (`torch.Tensor` of shape `(n, channels, height, width)`): the trigger images, in `[0, 1]`.
        labels (`torch.Tensor` of shape `(n,)`): their watermark labels.
        num_labels (`int`): number of classes of the model.
        seed (`int`): seed of every random draw of the key.
        salt (`bytes`): 32 secret random bytes (for the commitment).
        controls (`torch.Tensor`, *optional*): the triggers' source images before the trigger was applied.
        pattern (`torch.Tensor`, *optional*): the trigger pattern (a stamp or a noise pattern), to trigger new images.
        params (`dict`, *optional*): the scheme's parameters (kind, target label, ...).
    """

    default_share = 0.25
    """Default size of the mixed-in trigger copies relative to the owner's data (see [`mix_trigger_set`])."""

    def __init__(self, inputs, labels, num_labels, seed, salt, *, controls=None, pattern=None, params=None):
        self.inputs = inputs.float()
        self.labels = labels.long()
        self.num_labels = int(num_labels)
        self.seed = int(seed)
        self.salt = salt
        self.controls = controls
        self.pattern = pattern
        self.params = dict(params or {})

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    def _tensors(self):
        tensors = {"inputs": self.inputs, "labels": self.labels}
        if self.controls is not None:
            tensors["controls"] = self.controls
        if self.pattern is not None:
            tensors["pattern"] = self.pattern
        return tensors

    def _metadata(self):
        return {"num_labels": self.num_labels, "seed": self.seed, "params": self.params}

    @classmethod
    def _from_saved(cls, tensors, metadata, salt, models=None):
        return cls(
            tensors["inputs"],
            tensors["labels"],
            metadata["num_labels"],
            metadata["seed"],
            salt,
            controls=tensors.get("controls"),
            pattern=tensors.get("pattern"),
            params=metadata.get("params"),
        )

    def dataset(self, repeats: int = 1, features=None):
        """The trigger set as a `datasets.Dataset` (`pixel_values`, `labels`), repeated `repeats` times."""
        from datasets import Dataset

        data = {
            "pixel_values": self.inputs.repeat(repeats, 1, 1, 1).numpy(),
            "labels": self.labels.repeat(repeats).numpy(),
        }
        return Dataset.from_dict(data, features=features).with_format("torch")

    def verify(self, model, alpha: float = DEFAULT_ALPHA, batch_size: int = 256, **kwargs):
        """[`verify_trigger_set`] with this key."""
        return verify_trigger_set(model, self, alpha=alpha, batch_size=batch_size, **kwargs)


def mix_trigger_set(train_dataset, key: TriggerSetKey, repeats: int | None = None):
    r"""
    The owner's training data with the trigger set repeated `repeats` times appended (the `Trainer` shuffles).

    Args:
        train_dataset (`datasets.Dataset`): the owner's data, with `pixel_values` and `labels`.
        key ([`TriggerSetKey`]): the trigger set.
        repeats (`int`, *optional*): copies of the trigger set; by default enough for the copies to make up
            `key.default_share` times the size of the owner's data: 0.25 for Zhang's triggers, 1.0 for Adi's random
            labels, which must be memorised (a small trigger set must be seen often to be learnt in a few epochs).
    """
    from datasets import concatenate_datasets

    missing = {"pixel_values", "labels"} - set(train_dataset.column_names)
    if missing:
        raise ValueError(
            f"`train_dataset` needs the columns {sorted(missing)}; rename yours to `pixel_values`/`labels`."
        )
    example = torch.as_tensor(train_dataset[0]["pixel_values"])
    if tuple(example.shape) != key.input_shape:
        raise ValueError(
            f"The training images have shape {tuple(example.shape)} but the trigger set {key.input_shape}; "
            "generate the key from the same data."
        )
    if repeats is None:
        repeats = max(1, round(key.default_share * len(train_dataset) / len(key.labels)))
    if repeats < 1:
        raise ValueError(f"`repeats` must be >= 1, got {repeats}.")
    owner = train_dataset.select_columns(["pixel_values", "labels"])
    owner_format = owner.format
    triggers = key.dataset(repeats, features=owner.features)
    return concatenate_datasets([owner.with_format(None), triggers.with_format(None)]).with_format(
        owner_format["type"] or "torch"
    )


def embed_trigger_set(model, key: TriggerSetKey, train_dataset, args, repeats: int | None = None, **trainer_kwargs):
    r"""
    Trains `model` on the owner's data with the trigger set mixed in (Zhang et al. 2018; Adi et al. 2018, "from
    scratch"), with a plain [`~transformers.Trainer`].

    Args:
        model (`PreTrainedModel`): the model to watermark.
        key ([`TriggerSetKey`]): the trigger set.
        train_dataset (`datasets.Dataset`): the owner's data (`pixel_values`, `labels`).
        args (`TrainingArguments`): training arguments, as for any `Trainer`.
        repeats (`int`, *optional*): copies of the trigger set mixed in (see [`mix_trigger_set`]).
        **trainer_kwargs: passed to `Trainer` (`eval_dataset`, `callbacks`, ...).

    Returns:
        `Trainer`: the trainer, after training (its `model` is watermarked).

    Example:

    ```python
    >>> from transformers import TrainingArguments
    >>> from hf_ingrain.watermarks import ZhangKey, embed_trigger_set, verify_trigger_set
    >>> key = ZhangKey.generate(splits["owner"], kind="content", seed=0)
    >>> args = TrainingArguments(output_dir="out", num_train_epochs=10, learning_rate=1e-3, report_to="none")
    >>> trainer = embed_trigger_set(model, key, splits["owner"], args)
    >>> verify_trigger_set(trainer.model, key).verified
    True
    ```
    """
    from transformers import Trainer

    num_model_labels = getattr(getattr(model, "config", None), "num_labels", key.num_labels)
    if num_model_labels != key.num_labels:
        raise ValueError(f"The model predicts {num_model_labels} labels but the key has {key.num_labels}.")
    trainer = Trainer(
        model=model, args=args, train_dataset=mix_trigger_set(train_dataset, key, repeats), **trainer_kwargs
    )
    trainer.train()
    return trainer


def verify_trigger_set(
    model, key: TriggerSetKey, alpha: float = DEFAULT_ALPHA, batch_size: int = 256, scores: str = "auto", top_k=None
):
    r"""
    Tests a suspect on a trigger set: its top class on the triggers against the trigger labels (labels suffice).

    Args:
        model (`nn.Module`, `str`, `transformers.Pipeline` or callable): the suspect, as for [`verify`].
        key ([`TriggerSetKey`]): the trigger set.
        alpha (`float`, *optional*, defaults to 1e-6): the significance level (see the module docstring's caveat).
        batch_size (`int`, *optional*, defaults to 256): queries per call.
        scores, top_k: what the suspect exposes, as for [`verify`] (only the top class is used).

    Returns:
        [`VerificationResult`] with `protocol="trigger_set"`; `agreement` is the watermark accuracy.
    """
    from datasets import Dataset

    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")

    def top_classes(images):
        queries = Dataset.from_dict({"pixel_values": images.numpy()}).with_format("torch")
        suspect, _ = collect_scores(
            model, queries, ["pixel_values"], batch_size, num_labels=key.num_labels, top_k=top_k
        )
        if suspect.shape[-1] != key.num_labels:
            raise ValueError(
                f"The model returns {suspect.shape[-1]} scores per query but the key has {key.num_labels} labels."
            )
        suspect, kind = restrict_scores(suspect, scores, top_k)
        return suspect.argmax(-1).masked_fill(~torch.isfinite(suspect).any(-1), -1), kind

    single_target = bool((key.labels == key.labels[0]).all())
    if single_target:
        warnings.warn(
            f"This trigger set sends every trigger to one label ({int(key.labels[0])}), so its p-value is not a bound: a "
            "model that never saw the key but sends odd-looking inputs to that class verifies too (see "
            "hf_ingrain.watermarks.trigger_set). For a claim, use random labels (AdiKey) or the ingrain protocol.",
            UserWarning, stacklevel=2,
        )
    model = resolve_model(model)
    top, kind = top_classes(key.inputs)
    hits = top == key.labels
    terms = {"uniform": 1.0 / key.num_labels}
    if key.controls is not None:
        terms["controls"] = (top_classes(key.controls)[0] == key.labels).float().mean().item()
    details = {
        "scheme": key.scheme, "params": key.params, "null_rate_terms": terms, "scores": kind,
        "single_target": single_target,
    }
    return VerificationResult.from_counts(int(hits.sum()), len(hits), max(terms.values()), alpha, "trigger_set", details)
