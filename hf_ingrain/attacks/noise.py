"""Gaussian noise on the weights (weight shifting)."""

import copy
import logging
from dataclasses import dataclass, field

import torch

from .prune import prunable_modules
from .registry import AttackSpec, BenchmarkColumns

logger = logging.getLogger(__name__)


class WeightNoiseAttack:
    r"""
    Adds Gaussian noise to every weight of the model's linear and convolution layers, each tensor's noise scaled to
    that tensor's own standard deviation: `w + scale · std(w) · N(0, 1)` (the "adding noise" attack of the WRT
    toolbox, Lukas et al. 2022, https://huggingface.co/papers/2108.04974).

    Threat model: the attacker holds the weights but no data, and perturbs all of them at once, hoping the watermark
    is more fragile than the task. Small scales leave both in place; large ones destroy both, so the attack is run at
    several scales and judged by the accuracy it leaves. Biases and normalisation layers are kept. The target is not
    modified: [`~WeightNoiseAttack.run`] returns a perturbed copy, the same for the same `seed`.

    Args:
        model (`PreTrainedModel` or `nn.Module`):
            The target.
        scale (`float`, *optional*, defaults to 0.1):
            Standard deviation of the noise relative to each weight tensor's own, `> 0`.
        seed (`int`, *optional*, defaults to 0):
            Seed of the noise (the caller's random state is left as it was).

    Example:

    ```python
    >>> from hf_ingrain.attacks import WeightNoiseAttack
    >>> noisy = WeightNoiseAttack(model, scale=0.1).run()
    ```
    """

    def __init__(self, model, scale: float = 0.1, seed: int = 0):
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        if not scale > 0:
            raise ValueError(
                f"`scale` is the noise's standard deviation relative to each weight tensor's and must be > 0, got "
                f"{scale}."
            )
        if not prunable_modules(model):
            raise ValueError("The model has no nn.Linear or nn.Conv layer to add noise to.")
        self.model, self.scale, self.seed = model, scale, seed

    @property
    def parameters(self) -> dict:
        return {"scale": self.scale, "seed": self.seed, "scope": "weights of Linear and Conv layers, relative to each"}

    @torch.no_grad()
    def run(self):
        """Returns a copy of the target with noise added to its linear and convolution weights."""
        model = copy.deepcopy(self.model)
        generator = torch.Generator().manual_seed(self.seed)
        for module in prunable_modules(model):
            weight = module.weight
            noise = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
            weight.add_((noise * self.scale * weight.float().std()).to(device=weight.device, dtype=weight.dtype))
        logger.info("Added Gaussian noise at %.3g x each weight tensor's standard deviation", self.scale)
        return model


@dataclass
class NoiseArguments:
    """Gaussian noise on the weights (see [`~hf_ingrain.attacks.WeightNoiseAttack`])."""

    scale: float = field(default=0.1, metadata={"help": "Noise std relative to each weight tensor's std (> 0)."})

    def __post_init__(self):
        if not self.scale > 0:
            raise ValueError(
                f"`--scale` must be > 0 (the noise's spread relative to each weight tensor's), got {self.scale}."
            )


def _run_cli(model, target, noise: NoiseArguments):
    attack = WeightNoiseAttack(model, scale=noise.scale, seed=target.seed)
    return attack.run(), attack.parameters


def _column(match, teacher, context):  # noise_<scale>
    return WeightNoiseAttack(teacher, scale=float(match[1]), seed=context.seed).run()


ATTACK = AttackSpec(
    name="noise",
    help="Add Gaussian noise to its weights (relative to each tensor's spread).",
    arguments=(NoiseArguments,),
    run_cli=_run_cli,
    columns=(BenchmarkColumns(r"noise_(\d+(?:\.\d+)?)", _column, names=("noise_0.05", "noise_0.1", "noise_0.3")),),
)
