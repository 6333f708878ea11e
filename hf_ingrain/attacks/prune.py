"""Global magnitude pruning."""

import copy
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

PRUNABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_weights(model) -> list[nn.Parameter]:
    """The weight matrices of the model's linear and convolution layers (each shared tensor once)."""
    weights = [module.weight for module in model.modules() if isinstance(module, PRUNABLE_LAYERS)]
    return list({id(weight): weight for weight in weights}.values())


class PruneAttack:
    r"""
    Global magnitude pruning (Han et al. 2015, https://huggingface.co/papers/1506.02626), the pruning attack of
    Uchida et al. 2017 and Adi et al. 2018.

    Threat model: the attacker holds the model's weights but no data, and zeroes the weights of smallest magnitude,
    hoping the watermark lives in them while the task does not.

    Of all the weights of the linear and convolution layers taken together (biases and other layers are kept),
    exactly `round(rate · n)` of smallest absolute value are set to zero. The target is not modified:
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

    name = "prune"

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
        """Returns a copy of the target with the smallest weights set to zero."""
        model = copy.deepcopy(self.model)
        weights = prunable_weights(model)
        magnitudes = torch.cat([weight.detach().abs().flatten().float().cpu() for weight in weights])
        num_pruned = round(self.rate * len(magnitudes))
        keep = torch.ones(len(magnitudes), dtype=torch.bool)
        keep[magnitudes.topk(num_pruned, largest=False).indices] = False
        for weight, mask in zip(weights, keep.split([weight.numel() for weight in weights])):
            weight.masked_fill_(~mask.view_as(weight).to(weight.device), 0.0)
        logger.info("Pruned %d of %d weights (%.1f%%)", num_pruned, len(magnitudes), 100 * self.rate)
        return model
