r"""WRK-like removal (the Watermark Removal attacK of Xiao et al., "Class-feature Watermark: A Resilient Black-box
Watermark Against Model Extraction Attacks", AAAI 2026, https://arxiv.org/abs/2511.07947): break the decision
boundaries that sample-level watermark artifacts shape near natural inputs, then fine-tune on augmented data."""

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


def random_shift(pixels: torch.Tensor, shift: int, fill: float, generator: torch.Generator) -> torch.Tensor:
    """Each image translated by up to `shift` pixels in each direction (a random crop of the image padded with `fill`:
    the crop augmentation of the paper's code; no flip, which changes a digit's or a garment's class)."""
    if shift == 0:
        return pixels
    padded = F.pad(pixels, (shift, shift, shift, shift), value=fill)
    height, width = pixels.shape[-2:]
    offsets = torch.randint(0, 2 * shift + 1, (len(pixels), 2), generator=generator).tolist()
    return torch.stack([padded[n, :, top:top + height, left:left + width] for n, (top, left) in enumerate(offsets)])


class WRKAttack:
    r"""
    A WRK-like removal attack, after the Watermark Removal attacK of Xiao et al. (AAAI 2026,
    https://arxiv.org/abs/2511.07947, whose code is at github.com/ClassFeatureWatermark; our implementation of its
    path for watermarks without a trigger). Threat model: the attacker holds the weights and a small labelled set of
    the task (the paper: 5% of the training data).

    1. **Boundary samples, relabelled.** For batches of the attacker's images, one signed-gradient step of size
       `perturbation` (a share of the pixel range) toward a random class's logit moves each image toward a decision
       boundary; each moved image gets a random label other than its true one (`num_perturbed` of them).
    2. **Unlearning.** The model is trained `relabel_epochs` on the attacker's images (true labels) and the moved ones
       (random wrong labels): SGD, momentum 0.9, weight decay 1e-4, `relabel_learning_rate`. What the model learned
       near its natural inputs beyond the task is overwritten; the true labels keep the task.
    3. **Augmented fine-tuning.** `finetune_epochs` on the attacker's images shifted by up to 4 pixels: SGD, weight
       decay 5e-4, `finetune_learning_rate`.

    The paper's neural-cleanse trigger detection is left out: the schemes of this package have no trigger.

    Args:
        model (`PreTrainedModel` or `nn.Module`): the target image classifier (reads `pixel_values`).
        num_examples (`int`, *optional*, defaults to 2500): attacker's images used (the paper: 2,500 of CIFAR-10).
        num_perturbed (`int`, *optional*, defaults to 500): moved images (the paper: about 500).
        perturbation (`float`, *optional*, defaults to 0.15): the step, a share of the pixel range (the paper: 0.15 on
            images in [0, 1]).
        relabel_epochs (`float`, *optional*, defaults to 3), relabel_learning_rate (`float`, *optional*, defaults to
            0.01): the unlearning step (the paper's).
        finetune_epochs (`float`, *optional*, defaults to 15), finetune_learning_rate (`float`, *optional*, defaults
            to 1e-4): the augmented fine-tuning (the paper's for CIFAR-10).
        batch_size (`int`, *optional*, defaults to 128): images per step of the unlearning (the paper's; 64 for the
            fine-tuning, as there).
        max_steps (`int`, *optional*, defaults to -1): if positive, each training step runs this many steps instead.
        seed (`int`, *optional*, defaults to 0): the images drawn, the classes, labels, shifts and batches.

    Example:

    ```python
    >>> from hf_ingrain.attacks import WRKAttack
    >>> attacked = WRKAttack(model, num_examples=500, num_perturbed=100, finetune_epochs=1).run(splits["attacker"])
    ```
    """

    def __init__(self, model, num_examples: int = 2500, num_perturbed: int = 500, perturbation: float = 0.15,
                 relabel_epochs: float = 3, relabel_learning_rate: float = 0.01, finetune_epochs: float = 15,
                 finetune_learning_rate: float = 1e-4, batch_size: int = 128, max_steps: int = -1, seed: int = 0):
        if not isinstance(model, nn.Module):
            raise ValueError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        check_positive(num_examples=num_examples, num_perturbed=num_perturbed, perturbation=perturbation,
                       relabel_learning_rate=relabel_learning_rate, batch_size=batch_size)
        if not 0 < perturbation < 1:
            raise ValueError(f"`perturbation` is a share of the pixel range, in (0, 1); got {perturbation}.")
        if relabel_epochs < 0 or finetune_epochs < 0 or finetune_learning_rate < 0:
            raise ValueError("`relabel_epochs`, `finetune_epochs` and `finetune_learning_rate` must be >= 0.")
        self.model, self.num_examples, self.num_perturbed, self.perturbation = model, num_examples, num_perturbed, \
            perturbation
        self.relabel_epochs, self.relabel_learning_rate = relabel_epochs, relabel_learning_rate
        self.finetune_epochs, self.finetune_learning_rate = finetune_epochs, finetune_learning_rate
        self.batch_size, self.max_steps, self.seed = batch_size, max_steps, seed

    @property
    def parameters(self) -> dict:
        """The attack's parameters, as recorded in the attacked model's card."""
        return {"num_examples": self.num_examples, "num_perturbed": self.num_perturbed,
                "perturbation": self.perturbation, "relabel_epochs": self.relabel_epochs,
                "relabel_learning_rate": self.relabel_learning_rate, "finetune_epochs": self.finetune_epochs,
                "finetune_learning_rate": self.finetune_learning_rate, "max_steps": self.max_steps, "seed": self.seed}

    def boundary_samples(self, pixels: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        """Step 1: `num_perturbed` images moved one signed-gradient step toward a random class, each with a random
        label other than its true one."""
        low, high = pixel_bounds(pixels)
        num_labels = predictions(self.model, pixels[:1]).shape[-1]
        moved, relabelled = [], []
        count = min(self.num_perturbed, len(pixels))
        with evaluating(self.model):
            for start in range(0, count, self.batch_size):
                batch = pixels[start:min(start + self.batch_size, count)].clone().requires_grad_(True)
                target = int(torch.randint(num_labels, (1,), generator=generator))
                (gradient,) = torch.autograd.grad(logits_of(self.model, batch)[:, target].sum(), batch)
                moved.append((batch + self.perturbation * (high - low) * gradient.sign()).clamp(low, high).detach())
                true = labels[start:start + len(batch)]
                relabelled.append((true + torch.randint(1, num_labels, (len(batch),), generator=generator))
                                  % num_labels)
        return torch.cat(moved), torch.cat(relabelled)

    def run(self, dataset):
        """Runs the three steps on a copy of the target with the attacker's labelled `dataset`; returns the copy."""
        pixels, labels = image_tensors(dataset, self.num_examples, self.seed, "WRK")
        generator = torch.Generator().manual_seed(self.seed + 1)
        moved, relabelled = self.boundary_samples(pixels, labels, generator)
        inputs, targets = torch.cat([pixels, moved]), torch.cat([labels, relabelled])

        def relabel_loss(model, index):
            return F.cross_entropy(logits_of(model, inputs[index]), targets[index].to(inputs.device))

        model = self.model
        if self.relabel_epochs > 0:
            model = train_copy(model, len(inputs), relabel_loss, self.relabel_epochs, self.batch_size,
                               self.relabel_learning_rate, self.seed, weight_decay=1e-4, what="WRK unlearning",
                               max_steps=self.max_steps)
        low = float(pixels.min())

        def augmented_loss(model, index):
            return F.cross_entropy(logits_of(model, random_shift(pixels[index], 4, low, generator)), labels[index])

        if self.finetune_epochs > 0 and self.finetune_learning_rate > 0:
            model = train_copy(model, len(pixels), augmented_loss, self.finetune_epochs, 64,
                               self.finetune_learning_rate, self.seed + 2, momentum=0.0, weight_decay=5e-4,
                               what="WRK augmented fine-tuning", max_steps=self.max_steps)
        if model is self.model:
            raise ValueError("WRK with no training (`relabel_epochs` = 0 and no fine-tuning) would return the target.")
        return model


@dataclass
class WRKArguments:
    """WRK-like removal (see [`~hf_ingrain.attacks.WRKAttack`]): relabelled boundary samples, then augmented
    fine-tuning."""

    num_examples: int = field(default=2500, metadata={"help": "Attacker's images used."})
    num_perturbed: int = field(default=500, metadata={"help": "Images moved toward a boundary and relabelled."})
    perturbation: float = field(default=0.15, metadata={"help": "Signed-gradient step, a share of the pixel range."})
    relabel_epochs: float = field(default=3, metadata={"help": "Epochs of the unlearning step."})
    relabel_learning_rate: float = field(default=0.01, metadata={"help": "SGD learning rate of the unlearning step."})


def _run_cli(model, target, training, wrk: WRKArguments):
    data = attacker_data(training)
    attack = WRKAttack(model, num_examples=wrk.num_examples, num_perturbed=wrk.num_perturbed,
                       perturbation=wrk.perturbation, relabel_epochs=wrk.relabel_epochs,
                       relabel_learning_rate=wrk.relabel_learning_rate, finetune_epochs=training.epochs,
                       finetune_learning_rate=training.learning_rate, batch_size=training.batch_size or 128,
                       max_steps=training.max_steps, seed=target.seed)
    return attack.run(data), {**attack.parameters, **data_parameters(training, data)}


def _column(match, teacher, context):  # wrk: the paper's settings, on the attacker's split
    return WRKAttack(teacher, seed=context.seed).run(context.attacker)


ATTACK = AttackSpec(
    name="wrk",
    help="Relabel images moved toward the boundary, then fine-tune on augmented data (WRK, Xiao et al. 2025).",
    arguments=(WRKArguments,),
    run_cli=_run_cli,
    trains=True,
    columns=(BenchmarkColumns(r"wrk", _column, names=("wrk",)),),
)
