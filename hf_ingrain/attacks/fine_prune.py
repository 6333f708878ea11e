"""Fine-pruning (Liu, Dolan-Gavitt and Garg 2018): prune the channels dormant on clean data, then fine-tune."""

import copy
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data import iterate_batches
from ..suspects import forward_logits
from ..suspects.querying import evaluating
from .arguments import attacker_data, data_parameters
from .finetune import FineTuneAttack, find_last_layer
from .registry import AttackSpec, BenchmarkColumns

logger = logging.getLogger(__name__)


def _hold_at_zero(keep: torch.Tensor):
    """A forward pre-hook that zeroes the pruned output channels' weights and bias before every forward: whatever an
    optimizer step does to them, the layer computes with them at zero (a hook, not `torch.nn.utils.prune`'s
    reparametrisation, so the model stays deep-copyable while it trains)."""

    @torch.no_grad()
    def hook(module, args):
        mask = keep.to(module.weight.device)
        module.weight.mul_(mask.view(-1, *([1] * (module.weight.dim() - 1))).to(module.weight.dtype))
        if module.bias is not None:
            module.bias.mul_(mask.to(module.bias.dtype))

    return hook


class FinePruneAttack:
    r"""
    Fine-pruning (Liu, Dolan-Gavitt and Garg 2018, https://huggingface.co/papers/1805.12185): the channels of the last
    convolution layer that are least active on the attacker's clean data are pruned (their weights and bias set to
    zero and held there), then the whole model is fine-tuned on that data ([`FineTuneAttack`], mode FTAL). A trigger
    set often lives in channels that clean data leaves dormant, which plain fine-tuning does not touch.

    A channel's activity is the mean of its positive part (what a following ReLU passes) over the data. With a
    normalisation layer after the convolution, the pruned channel still carries that layer's shift.

    Args:
        model (`PreTrainedModel` or `nn.Module`):
            The target classifier.
        rate (`float`, *optional*, defaults to 0.5):
            Fraction of the layer's output channels to prune, in `[0, 1)`.
        layer (`str`, *optional*):
            Name of the convolution layer to prune (default: the model's last `nn.Conv2d`).
        **fine_tune_kwargs:
            Arguments of [`FineTuneAttack`] (`learning_rate`, `num_train_epochs`, `batch_size`, `max_steps`, `seed`,
            `training_args`); the mode is FTAL.

    Example:

    ```python
    >>> from hf_ingrain.attacks import FinePruneAttack
    >>> attacked = FinePruneAttack(model, rate=0.5, max_steps=10).run(splits["attacker"])
    ```
    """

    def __init__(self, model, rate: float = 0.5, layer: str | None = None, **fine_tune_kwargs):
        if not isinstance(model, nn.Module):
            raise ValueError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        if not 0 <= rate < 1:
            raise ValueError(f"`rate` is the share of the layer's channels to prune and must be in [0, 1), got {rate}.")
        if "mode" in fine_tune_kwargs:
            raise ValueError("Fine-pruning fine-tunes every layer (FTAL): drop `mode`.")
        self.layer_name, _ = find_last_layer(  # fail now, not after a pass over the data
            model, layer, nn.Conv2d, what="a convolution layer", argument="layer", purpose="prune"
        )
        self.model, self.rate = model, rate
        self.fine_tune = FineTuneAttack(model, mode="FTAL", **fine_tune_kwargs)  # checks its arguments now

    @property
    def parameters(self) -> dict:
        return {"rate": self.rate, "layer": self.layer_name, **self.fine_tune.parameters}

    @torch.no_grad()
    def channel_activity(self, model, dataset) -> torch.Tensor:
        """The mean positive activation of each output channel of the pruned layer on `dataset`."""
        layer = model.get_submodule(self.layer_name)
        total, count = None, 0

        def record(module, inputs, output):
            nonlocal total, count
            activity = output.detach().float().clamp(min=0).mean(dim=(2, 3)).sum(0)
            total = activity if total is None else total + activity
            count += output.shape[0]

        handle = layer.register_forward_hook(record)
        try:
            with evaluating(model):
                for batch in iterate_batches(dataset, 256):
                    forward_logits(model, batch)
        finally:
            handle.remove()
        return total.cpu() / max(count, 1)

    def run(self, dataset):
        """Prunes the dormant channels of a copy of the target, fine-tunes it on `dataset` (with `labels`) with the
        pruned channels held at zero, and returns it (the pruned channels' indices in `pruned_channels`)."""
        if len(dataset) == 0:
            raise ValueError("Fine-pruning needs the attacker's clean, labelled data: the data set is empty.")
        model = copy.deepcopy(self.model)
        activity = self.channel_activity(model, dataset)
        pruned = activity.argsort()[: round(self.rate * len(activity))]
        layer = model.get_submodule(self.layer_name)
        keep = torch.ones(layer.out_channels)
        keep[pruned] = 0
        hold = _hold_at_zero(keep)
        handle = layer.register_forward_pre_hook(hold)  # copied with the model by the fine-tuning
        hold(layer, ())
        logger.info("Fine-pruning: pruned %d of %d channels of %s", len(pruned), len(activity), self.layer_name)
        self.fine_tune.model = model
        tuned = self.fine_tune.run(dataset)
        tuned_layer = tuned.get_submodule(self.layer_name)
        hold(tuned_layer, ())  # the last optimizer step moved them: back to zero, for good
        tuned_layer._forward_pre_hooks.pop(handle.id, None)
        self.pruned_channels = pruned.tolist()
        return tuned


@dataclass
class FinePruneArguments:
    """Fine-pruning (see [`~hf_ingrain.attacks.FinePruneAttack`]): prune dormant channels, then fine-tune (FTAL)."""

    rate: float = field(default=0.5, metadata={"help": "Share of the last convolution's channels to prune."})
    layer: str | None = field(default=None, metadata={"help": "Name of the convolution to prune (default: the last)."})


def _run_cli(model, target, training, fineprune: FinePruneArguments):
    data = attacker_data(training)
    attack = FinePruneAttack(
        model, rate=fineprune.rate, layer=fineprune.layer, learning_rate=training.learning_rate,
        num_train_epochs=training.epochs, batch_size=training.batch_size or 100, max_steps=training.max_steps,
        seed=target.seed,
    )
    return attack.run(data), {**attack.parameters, **data_parameters(training, data)}


def _column(match, teacher, context):  # fineprune_<percent of the channels>
    return FinePruneAttack(
        teacher, rate=int(match[1]) / 100, num_train_epochs=context.config.finetune_epochs, seed=context.seed,
    ).run(context.attacker)


ATTACK = AttackSpec(
    name="fineprune",
    help="Prune the channels dormant on clean data, then fine-tune (Liu et al. 2018).",
    arguments=(FinePruneArguments,),
    run_cli=_run_cli,
    trains=True,
    columns=(BenchmarkColumns(r"fineprune_(\d+)", _column, names=("fineprune_50",)),),
)
