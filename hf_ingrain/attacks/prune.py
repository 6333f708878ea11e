"""Global magnitude pruning."""

import copy
import logging
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .registry import AttackSpec, BenchmarkColumns

logger = logging.getLogger(__name__)

PRUNABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_modules(model) -> list[nn.Module]:
    """The model's linear and convolution layers (a layer whose weight another one shares, once)."""
    modules = {}
    for module in model.modules():
        if isinstance(module, PRUNABLE_LAYERS):
            modules.setdefault(id(module.weight), module)
    return list(modules.values())


def prunable_weights(model) -> list[nn.Parameter]:
    """The weight matrices of the model's linear and convolution layers (each shared tensor once)."""
    return [module.weight for module in prunable_modules(model)]


class PruneAttack:
    r"""
    Global magnitude pruning (Han et al. 2015, https://huggingface.co/papers/1506.02626), the pruning attack of
    Uchida et al. 2017 and Adi et al. 2018.

    Threat model: the attacker holds the model's weights but no data, and zeroes the weights of smallest magnitude,
    hoping the watermark lives in them while the task does not.

    Of all the weights of the linear and convolution layers taken together (biases and other layers are kept),
    exactly `round(rate · n)` of smallest absolute value are set to zero, with PyTorch's
    `torch.nn.utils.prune.global_unstructured` (L1), then made permanent. The target is not modified:
    [`~PruneAttack.run`] returns a pruned copy.

    Args:
        model (`PreTrainedModel` or `nn.Module`):
            The target.
        rate (`float`, *optional*, defaults to 0.5):
            Fraction of the weights to set to zero, in `[0, 1]`.

    Example:

    ```python
    >>> from hf_ingrain.attacks import PruneAttack
    >>> pruned = PruneAttack(model, rate=0.5).run()
    ```
    """

    def __init__(self, model, rate: float = 0.5):
        if not isinstance(model, nn.Module):
            raise ValueError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        if not 0 <= rate <= 1:
            raise ValueError(f"`rate` is the fraction of weights to zero and must be in [0, 1], got {rate}.")
        if not prunable_weights(model):
            raise ValueError("The model has no nn.Linear or nn.Conv layer to prune.")
        self.model, self.rate = model, rate

    @property
    def parameters(self) -> dict:
        return {"rate": self.rate, "scope": "global, by magnitude, weights of Linear and Conv layers"}

    @torch.no_grad()
    def run(self):
        """Returns a copy of the target with the smallest weights set to zero (`torch.nn.utils.prune`, made
        permanent)."""
        model = copy.deepcopy(self.model)
        targets = [(module, "weight") for module in prunable_modules(model)]
        total = sum(module.weight.numel() for module, _ in targets)
        num_pruned = round(self.rate * total)
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=num_pruned)
        for module, name in targets:
            torch_prune.remove(module, name)
        logger.info("Pruned %d of %d weights (%.1f%%)", num_pruned, total, 100 * self.rate)
        return model


@dataclass
class PruneArguments:
    """Global magnitude pruning (see [`~hf_ingrain.attacks.PruneAttack`])."""

    rate: float = field(default=0.5, metadata={"help": "Fraction of the weights set to zero."})


def _run_cli(model, target, prune: PruneArguments):
    attack = PruneAttack(model, rate=prune.rate)
    return attack.run(), attack.parameters


def _column(match, teacher, context):  # prune_<percent of the weights>
    return PruneAttack(teacher, rate=int(match[1]) / 100).run()


ATTACK = AttackSpec(
    name="prune",
    help="Zero its smallest weights (global magnitude pruning).",
    arguments=(PruneArguments,),
    run_cli=_run_cli,
    columns=(BenchmarkColumns(r"prune_(\d+)", _column, names=("prune_50",)),),
)
