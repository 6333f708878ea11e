"""What the removal attacks of 2023-2025 (WRK, Neural Dehydration, RemovalNet) share: the attacker's images as
tensors, a seeded training loop over a copy of the target, and the features the classification head reads."""

import copy
import logging

import torch
from torch import nn

from ..data import TensorQueries, draw_examples
from ..suspects.querying import collect_scores, model_logits
from .finetune import find_last_layer

logger = logging.getLogger(__name__)


def image_tensors(dataset, limit: int | None, seed: int, what: str, labelled: bool = True):
    r"""
    The first `limit` examples of `dataset` after a seeded shuffle, as `(pixel_values, labels)` tensors (`labels` is
    `None` without `labelled`). Refuses data without images or, with `labelled`, without labels, naming the fix.
    """
    if dataset is None or len(dataset) == 0:
        raise ValueError(f"{what} needs the attacker's images of the task: the data set is empty.")
    columns = ["pixel_values", *(["labels"] if labelled else [])]
    drawn = draw_examples(dataset, len(dataset) if limit is None else limit, seed, columns)
    if set(drawn) != set(columns):
        raise ValueError(
            f"{what} needs {'labelled ' if labelled else ''}images: a `pixel_values` column"
            f"{' and `labels` (or `label`)' if labelled else ''}; the data set gives "
            f"{sorted(drawn) or dataset.column_names}. Prepare it for the model first "
            "(`hf_ingrain.data.prepare_dataset`)."
        )
    return drawn["pixel_values"].float(), drawn["labels"].long().flatten() if labelled else None


def pixel_bounds(pixels: torch.Tensor) -> tuple[float, float]:
    """The pixel range of the attacker's images (after the processor's normalisation): perturbations stay inside."""
    return float(pixels.min()), float(pixels.max())


def logits_of(model, pixels: torch.Tensor) -> torch.Tensor:
    """`model`'s logits on `pixels` (gradients flow)."""
    return model_logits(model, {"pixel_values": pixels})


def predictions(model, pixels: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """`model`'s logits on `pixels` in eval mode, in batches, on the CPU (`collect_scores`)."""
    return collect_scores(model, TensorQueries({"pixel_values": pixels}), batch_size=batch_size)[0]


class HeadInputs:
    """Records the input of the model's classification head (its last `nn.Linear`) at every forward: the features the
    head reads. Use as a context manager."""

    def __init__(self, model):
        _, self.head = find_last_layer(model)
        self.features = None

    def _record(self, module, args):
        self.features = args[0]

    def __enter__(self):
        self.handle = self.head.register_forward_pre_hook(self._record)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def train_copy(model, size: int, loss_of, epochs: float, batch_size: int, learning_rate: float, seed: int,
               optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0, what: str = "attack",
               max_steps: int = -1):
    r"""
    Trains a copy of `model` for `epochs` passes (or, if positive, `max_steps` steps) over `size` examples in seeded
    random batches and returns it in eval mode; `loss_of(model, indices)` is the loss of the batch `indices`. Every
    parameter is trained.
    """
    model = copy.deepcopy(model)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    if optimizer == "sgd":
        optim = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    else:
        optim = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-size // batch_size)
    total = max_steps if max_steps > 0 else max(1, round(epochs * steps_per_epoch))
    model.train()
    step = 0
    while step < total:
        order = torch.randperm(size, generator=generator)
        for start in range(0, size, batch_size):
            if step == total:
                break
            loss = loss_of(model, order[start:start + batch_size])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
    logger.info("%s: %d steps on %d examples, last loss %.4f", what, total, size, float(loss.detach()))
    return model.eval()


def check_positive(**values) -> None:
    """Refuses any of `values` that is not > 0, naming it."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"`{name}` must be > 0, got {value}.")


def freeze(model: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of `model` (a teacher's reference outputs)."""
    frozen = copy.deepcopy(model).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen
