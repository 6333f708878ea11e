r"""Neural-Dehydration-like removal (Lu, Li, Zhang, Pan and Yang, "Neural Dehydration: Effective Erasure of Black-box
Watermarks from DNNs with Limited Data", CCS 2024, https://arxiv.org/abs/2309.03466): recover what the model learned
by inverting it, then unlearn it, with few or no data."""

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..suspects.querying import evaluating
from ._removal import check_positive, image_tensors, logits_of, pixel_bounds, predictions, train_copy
from .arguments import attacker_data, data_parameters
from .registry import AttackSpec, BenchmarkColumns

logger = logging.getLogger(__name__)


class _BatchNormStatistics:
    """The DeepInversion prior: how far each `BatchNorm2d` layer's batch statistics on the inputs being recovered are
    from the running statistics it learned on the owner's data (0 for a model without batch norm)."""

    def __init__(self, model):
        self.layers = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
        self.losses = []

    def _hook(self, module, args, output):
        inputs = args[0].float()
        mean, variance = inputs.mean(dim=(0, 2, 3)), inputs.var(dim=(0, 2, 3), unbiased=False)
        self.losses.append(torch.norm(mean - module.running_mean.float()) +
                           torch.norm(variance - module.running_var.float()))

    def __enter__(self):
        self.handles = [layer.register_forward_hook(self._hook) for layer in self.layers]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()

    def pop(self) -> torch.Tensor:
        total = sum(self.losses) if self.losses else torch.zeros(())
        self.losses = []
        return total


def total_variation(pixels: torch.Tensor) -> torch.Tensor:
    """The images' mean absolute difference between neighbouring pixels (the smoothness prior of inversion)."""
    return ((pixels[..., 1:, :] - pixels[..., :-1, :]).abs().mean() +
            (pixels[..., :, 1:] - pixels[..., :, :-1]).abs().mean())


class DehydrationAttack:
    r"""
    A Neural-Dehydration-like removal attack, after Dehydra (Lu et al., CCS 2024, https://arxiv.org/abs/2309.03466):
    watermark-agnostic, with limited or no data. Our implementation of its two stages, for schemes without a target
    class. Threat model: the attacker holds the weights; data are optional.

    1. **Recovery by inversion.** For each class, `samples_per_class` inputs start as noise in the pixel range and are
       optimised (Adam, `inversion_steps` steps) so that the model gives that class: cross-entropy, plus the
       DeepInversion prior that matches each batch-norm layer's statistics to its running ones, plus total
       variation. They are what the model has learned of each class, its watermark included.
    2. **Unlearning.** A copy of the model is fine-tuned on the recovered inputs (and on the attacker's labelled
       images, if `num_examples` > 0) with their classes as hard labels: the model keeps its decisions and loses
       what its outputs carry beyond them, where a watermark in the predictions lives. (The paper's target-class
       detection and sample splitting serve watermarks with a target class; the schemes of this package have
       none.)

    Args:
        model (`PreTrainedModel` or `nn.Module`): the target image classifier (reads `pixel_values`).
        samples_per_class (`int`, *optional*, defaults to 64): inputs recovered per class.
        inversion_steps (`int`, *optional*, defaults to 200): Adam steps of the recovery.
        inversion_learning_rate (`float`, *optional*, defaults to 0.05): Adam's step on the pixels.
        batch_norm_weight (`float`, *optional*, defaults to 0.1), tv_weight (`float`, *optional*, defaults to 0.05):
            the priors' weights.
        num_examples (`int`, *optional*, defaults to 0): attacker's labelled images added to the unlearning (0: data
            free; the attacker's data set is still read for the images' shape and pixel range).
        epochs (`float`, *optional*, defaults to 10), learning_rate (`float`, *optional*, defaults to 1e-3),
            batch_size (`int`, *optional*, defaults to 64): the unlearning (Adam).
        max_steps (`int`, *optional*, defaults to -1): if positive, the unlearning runs this many steps instead.
        seed (`int`, *optional*, defaults to 0): the starting noise, the images drawn and the batches.

    Example:

    ```python
    >>> from hf_ingrain.attacks import DehydrationAttack
    >>> attacked = DehydrationAttack(model, samples_per_class=8, inversion_steps=20, epochs=1).run(splits["attacker"])
    ```
    """

    def __init__(self, model, samples_per_class: int = 64, inversion_steps: int = 200,
                 inversion_learning_rate: float = 0.05, batch_norm_weight: float = 0.1, tv_weight: float = 0.05,
                 num_examples: int = 0, epochs: float = 10, learning_rate: float = 1e-3, batch_size: int = 64,
                 max_steps: int = -1, seed: int = 0):
        if not isinstance(model, nn.Module):
            raise ValueError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        check_positive(samples_per_class=samples_per_class, inversion_steps=inversion_steps,
                       inversion_learning_rate=inversion_learning_rate, learning_rate=learning_rate,
                       batch_size=batch_size)
        if batch_norm_weight < 0 or tv_weight < 0 or num_examples < 0:
            raise ValueError("`batch_norm_weight`, `tv_weight` and `num_examples` must be >= 0.")
        if max_steps <= 0 and not epochs > 0:
            raise ValueError(f"`epochs` must be > 0 (or set `max_steps`), got {epochs}.")
        self.model, self.samples_per_class, self.inversion_steps = model, samples_per_class, inversion_steps
        self.inversion_learning_rate, self.batch_norm_weight, self.tv_weight = (
            inversion_learning_rate, batch_norm_weight, tv_weight)
        self.num_examples, self.epochs, self.learning_rate, self.batch_size = (
            num_examples, epochs, learning_rate, batch_size)
        self.max_steps, self.seed = max_steps, seed

    @property
    def parameters(self) -> dict:
        """The attack's parameters, as recorded in the attacked model's card."""
        return {"samples_per_class": self.samples_per_class, "inversion_steps": self.inversion_steps,
                "inversion_learning_rate": self.inversion_learning_rate, "batch_norm_weight": self.batch_norm_weight,
                "tv_weight": self.tv_weight, "num_examples": self.num_examples, "epochs": self.epochs,
                "learning_rate": self.learning_rate, "max_steps": self.max_steps, "seed": self.seed}

    def recover(self, shape: tuple, bounds: tuple[float, float]):
        """Stage 1: `samples_per_class` inputs of each class, recovered from noise by inverting the model; returns the
        inputs and their classes."""
        low, high = bounds
        num_labels = predictions(self.model, torch.full((1, *shape), (low + high) / 2)).shape[-1]
        generator = torch.Generator().manual_seed(self.seed)
        classes = torch.arange(num_labels).repeat_interleave(self.samples_per_class)
        pixels = (low + (high - low) * torch.rand((len(classes), *shape), generator=generator)).requires_grad_(True)
        optimizer = torch.optim.Adam([pixels], lr=self.inversion_learning_rate * (high - low))
        with evaluating(self.model), _BatchNormStatistics(self.model) as statistics:
            for _ in range(self.inversion_steps):
                loss = F.cross_entropy(logits_of(self.model, pixels).float(), classes)
                loss = loss + self.batch_norm_weight * statistics.pop() + self.tv_weight * total_variation(pixels)
                (gradient,) = torch.autograd.grad(loss, pixels)  # the model's parameters get no `.grad`
                pixels.grad = gradient
                optimizer.step()
                with torch.no_grad():
                    pixels.clamp_(low, high)
        recovered = pixels.detach()
        reached = float((predictions(self.model, recovered).argmax(-1) == classes).float().mean())
        logger.info("Dehydration: recovered %d inputs, %.0f%% of them classified as the class they were recovered for",
                    len(recovered), 100 * reached)
        return recovered, classes

    def run(self, dataset):
        """Recovers, then unlearns on a copy of the target; `dataset` (the attacker's images) gives the input shape and
        pixel range, and with `num_examples` > 0 labelled images too. Returns the copy."""
        pixels, labels = image_tensors(dataset, max(self.num_examples, 1), self.seed, "Dehydration",
                                       labelled=self.num_examples > 0)
        recovered, classes = self.recover(tuple(pixels.shape[1:]), pixel_bounds(pixels))
        if self.num_examples > 0:
            inputs, targets = torch.cat([recovered, pixels]), torch.cat([classes, labels])
        else:
            inputs, targets = recovered, classes

        def loss_of(model, index):
            return F.cross_entropy(logits_of(model, inputs[index]).float(), targets[index])

        return train_copy(self.model, len(inputs), loss_of, self.epochs, self.batch_size, self.learning_rate,
                          self.seed, optimizer="adam", what="Dehydration unlearning", max_steps=self.max_steps)


@dataclass
class DehydrationArguments:
    """Neural-Dehydration-like removal (see [`~hf_ingrain.attacks.DehydrationAttack`]): recover by inversion, then
    unlearn; data-free unless `--num_examples` > 0."""

    samples_per_class: int = field(default=64, metadata={"help": "Inputs recovered per class."})
    inversion_steps: int = field(default=200, metadata={"help": "Adam steps of the recovery."})
    num_examples: int = field(default=0, metadata={"help": "Attacker's labelled images added (0: data-free)."})


def _run_cli(model, target, training, dehydration: DehydrationArguments):
    data = attacker_data(training)
    attack = DehydrationAttack(model, samples_per_class=dehydration.samples_per_class,
                               inversion_steps=dehydration.inversion_steps, num_examples=dehydration.num_examples,
                               epochs=training.epochs, learning_rate=training.learning_rate,
                               batch_size=training.batch_size or 64, max_steps=training.max_steps, seed=target.seed)
    return attack.run(data), {**attack.parameters, **data_parameters(training, data)}


def _column(match, teacher, context):  # dehydration: data-free (the attacker's split gives only the images' shape)
    return DehydrationAttack(teacher, seed=context.seed).run(context.attacker)


ATTACK = AttackSpec(
    name="dehydration",
    help="Recover the model's knowledge by inversion, then unlearn it, data-free (Neural Dehydration, Lu et al. 2024).",
    arguments=(DehydrationArguments,),
    run_cli=_run_cli,
    trains=True,
    columns=(BenchmarkColumns(r"dehydration", _column, names=("dehydration",)),),
)
