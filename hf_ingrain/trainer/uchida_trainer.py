"""[`UchidaTrainer`]: a `Trainer` that embeds a Uchida weight signature (the white-box baseline) while training."""

import torch
from transformers import Trainer

from ..losses import embedding_vector, signature_loss
from .mixins import AuxiliaryLossMixin, LoggedMetricsMixin, check_config
from .uchida_config import UchidaConfig


def signature_weight(model, parameter_name: str) -> torch.Tensor:
    """The weight of `model` named `parameter_name`, which carries a Uchida signature (at least 2 dimensions)."""
    parameters = dict(model.named_parameters())
    if parameter_name not in parameters:
        raise ValueError(
            f"The model has no parameter {parameter_name!r}; white-box verification needs the same architecture."
        )
    weight = parameters[parameter_name]
    if weight.ndim < 2:
        raise ValueError(
            f"{parameter_name!r} has shape {tuple(weight.shape)}; choose a weight with at least 2 dimensions."
        )
    return weight


class UchidaTrainer(AuxiliaryLossMixin, LoggedMetricsMixin, Trainer):
    r"""
    A [`~transformers.Trainer`] that embeds a Uchida signature while training: task loss + λ · signature loss
    (Uchida et al. 2017, https://huggingface.co/papers/1701.04082). The regulariser counts once per optimizer step,
    whatever the gradient accumulation.

    Args:
        model (`PreTrainedModel`): the model to train and sign.
        args ([`UchidaConfig`]): training arguments with `uchida_lambda`.
        key ([`~hf_ingrain.watermarks.UchidaKey`]): the owner's key (its layer must exist in `model`).
        **kwargs: everything else `Trainer` takes.

    Example:

    ```python
    >>> from hf_ingrain.watermarks import UchidaConfig, UchidaKey, UchidaTrainer
    >>> key = UchidaKey.generate(model, num_bits=64, seed=0)
    >>> UchidaTrainer(model=model, args=UchidaConfig(output_dir="out"), key=key, train_dataset=splits["owner"]).train()
    ```
    """

    _tag_names = ["hf_ingrain", "uchida", "watermark"]

    def __init__(self, model=None, args: UchidaConfig | None = None, key=None, **kwargs):
        check_config(args, UchidaConfig, "`uchida_lambda`")
        if not all(hasattr(key, name) for name in ("projection", "bits", "parameter_name")):
            raise ValueError("Pass the owner's UchidaKey (`hf_ingrain.watermarks.UchidaKey.generate`) as `key=`.")
        if model is None:
            raise ValueError("Pass the model to train as `model=`.")
        weight = signature_weight(model, key.parameter_name)
        if embedding_vector(weight).numel() != key.projection.shape[1]:
            raise ValueError(
                f"The key was drawn for another shape of {key.parameter_name!r}; generate it from this model."
            )
        super().__init__(model=model, args=args, **kwargs)
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(self._tag_names)
        self.key = key
        self._signature_weight = weight  # the same Parameter inside any wrapper
        self._init_metrics()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        task_loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        signature = signature_loss(self._signature_weight, self.key.projection, self.key.bits)
        self._record_metric(model, "uchida/loss", signature)
        bits = (
            self.key.projection.to(signature.device) @ embedding_vector(self._signature_weight.detach()) > 0
        ).long()
        self._record_metric(model, "uchida/bit_accuracy", bits == self.key.bits.to(bits.device))
        regulariser = self._reduce_per_step(signature, num_items_in_batch, model.training)
        loss = task_loss + self.args.uchida_lambda * regulariser
        return (loss, outputs) if return_outputs else loss
