r"""RemovalNet-like removal (Yao, Zhou et al., "RemovalNet: DNN Fingerprint Removal Attacks", IEEE TDSC 2023,
https://arxiv.org/abs/2308.12319): with a few hundred substitute samples, pull the model's internal representation away
from the victim's while its decisions stay the victim's."""

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ._removal import HeadInputs, check_positive, freeze, image_tensors, logits_of, predictions, train_copy
from .arguments import attacker_data, data_parameters
from .registry import AttackSpec, BenchmarkColumns

logger = logging.getLogger(__name__)


class RemovalNetAttack:
    r"""
    A RemovalNet-like removal attack, after RemovalNet (Yao, Zhou et al., IEEE TDSC 2023,
    https://arxiv.org/abs/2308.12319): a min-max game in which a surrogate, initialised as the victim, keeps the
    victim's general semantics and loses its specific knowledge. Our implementation of its two forces. Threat model:
    the attacker holds the weights and about 400 unlabelled substitute images (the paper's budget).

    The surrogate (a copy of the victim) is trained on the substitute images with
    `cross_entropy(surrogate, victim's label) + feature_weight * cos(h_surrogate - m, h_victim - m)`: the first term
    keeps the victim's decisions (its top-1 labels, not its scores), the second pushes the features that the
    classification head reads (`h`, the input of the model's last `nn.Linear`, centred on the victim's mean `m` over
    the substitute images) away from the victim's, where a fingerprint's or a watermark's specific knowledge sits.
    The cosine is bounded, so the push cannot run away from the task.

    Args:
        model (`PreTrainedModel` or `nn.Module`): the target image classifier (reads `pixel_values`).
        num_examples (`int`, *optional*, defaults to 400): substitute images (the paper's budget); labels not read.
        feature_weight (`float`, *optional*, defaults to 1.0): weight of the representation term.
        epochs (`float`, *optional*, defaults to 20), learning_rate (`float`, *optional*, defaults to 1e-3),
            batch_size (`int`, *optional*, defaults to 64): the training (Adam).
        max_steps (`int`, *optional*, defaults to -1): if positive, train this many steps instead.
        seed (`int`, *optional*, defaults to 0): the images drawn and the batches.

    Example:

    ```python
    >>> from hf_ingrain.attacks import RemovalNetAttack
    >>> attacked = RemovalNetAttack(model, num_examples=100, epochs=1).run(splits["attacker"])
    ```
    """

    def __init__(self, model, num_examples: int = 400, feature_weight: float = 1.0, epochs: float = 20,
                 learning_rate: float = 1e-3, batch_size: int = 64, max_steps: int = -1, seed: int = 0):
        if not isinstance(model, nn.Module):
            raise ValueError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        check_positive(num_examples=num_examples, learning_rate=learning_rate, batch_size=batch_size)
        if feature_weight < 0:
            raise ValueError(f"`feature_weight` must be >= 0, got {feature_weight}.")
        if max_steps <= 0 and not epochs > 0:
            raise ValueError(f"`epochs` must be > 0 (or set `max_steps`), got {epochs}.")
        HeadInputs(model)  # a model without an nn.Linear head fails now, naming the fix
        self.model, self.num_examples, self.feature_weight = model, num_examples, feature_weight
        self.epochs, self.learning_rate, self.batch_size, self.max_steps, self.seed = (
            epochs, learning_rate, batch_size, max_steps, seed)

    @property
    def parameters(self) -> dict:
        """The attack's parameters, as recorded in the attacked model's card."""
        return {"num_examples": self.num_examples, "feature_weight": self.feature_weight, "epochs": self.epochs,
                "learning_rate": self.learning_rate, "max_steps": self.max_steps, "seed": self.seed}

    @torch.no_grad()
    def victim_features(self, pixels: torch.Tensor):
        """The victim's labels and head inputs on the substitute images."""
        victim = freeze(self.model)
        with HeadInputs(victim) as recorded:
            features = []
            for start in range(0, len(pixels), 512):
                logits_of(victim, pixels[start:start + 512])
                features.append(recorded.features.flatten(1).float().cpu())
        return predictions(victim, pixels).argmax(-1), torch.cat(features)

    def run(self, dataset):
        """Trains a copy of the target on `dataset`'s images (the substitute set) and returns it."""
        pixels, _ = image_tensors(dataset, self.num_examples, self.seed, "RemovalNet", labelled=False)
        labels, features = self.victim_features(pixels)

        center = features.mean(0)  # centred: features after a ReLU are all >= 0, and their raw cosines all near 1

        def loss_of(model, index):
            with HeadInputs(model) as recorded:
                logits = logits_of(model, pixels[index]).float()
            mine = recorded.features.flatten(1).float() - center.to(logits.device)
            similarity = F.cosine_similarity(mine, features[index] - center, dim=1).mean()
            return F.cross_entropy(logits, labels[index]) + self.feature_weight * similarity

        return train_copy(self.model, len(pixels), loss_of, self.epochs, self.batch_size, self.learning_rate,
                          self.seed, optimizer="adam", what="RemovalNet", max_steps=self.max_steps)


@dataclass
class RemovalNetArguments:
    """RemovalNet-like removal (see [`~hf_ingrain.attacks.RemovalNetAttack`]): keep the victim's labels, push its
    features away, on a few hundred substitute images."""

    num_examples: int = field(default=400, metadata={"help": "Substitute images (labels not read)."})
    feature_weight: float = field(default=1.0, metadata={"help": "Weight of the feature-distance term."})


def _run_cli(model, target, training, removalnet: RemovalNetArguments):
    data = attacker_data(training)
    attack = RemovalNetAttack(model, num_examples=removalnet.num_examples, feature_weight=removalnet.feature_weight,
                              epochs=training.epochs, learning_rate=training.learning_rate,
                              batch_size=training.batch_size or 64, max_steps=training.max_steps, seed=target.seed)
    return attack.run(data), {**attack.parameters, **data_parameters(training, data)}


def _column(match, teacher, context):  # removalnet: 400 of the attacker's images, the defaults
    return RemovalNetAttack(teacher, seed=context.seed).run(context.attacker)


ATTACK = AttackSpec(
    name="removalnet",
    help="Keep the victim's labels and push its features away, on 400 images (RemovalNet, Yao et al. 2023).",
    arguments=(RemovalNetArguments,),
    run_cli=_run_cli,
    trains=True,
    columns=(BenchmarkColumns(r"removalnet", _column, names=("removalnet",)),),
)
