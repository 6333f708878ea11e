"""The student a thief trains ([`build_student`]): of the stolen model's architecture, a small CNN, or a tiny
`transformers` model of another kind; the distillation and extraction attacks share it."""

import copy

import torch
from torch import nn

from .ensemble import EnsembleModel

STUDENT_ARCHITECTURES = ("same", "small", "resnet", "convnext", "vit")


def build_student(teacher, architecture="same", input_shape: tuple[int, int, int] | None = None, seed: int = 0):
    r"""
    A freshly initialised student for `teacher`, with its labels.

    Args:
        teacher (`nn.Module`): the stolen model (for an [`EnsembleModel`], its first member).
        architecture (`str` or `nn.Module`, *optional*, defaults to `"same"`): `"same"` (the teacher's architecture and
            config), `"small"` (a small CNN: channels 8 and 16, 32 units), or a tiny `transformers` model from config
            with another inductive bias, `"resnet"`, `"convnext"` or `"vit"` (see
            [`~hf_ingrain.models.build_classifier`]); a model is used as it is.
        input_shape (`tuple[int, int, int]`, *optional*): the images' `(channels, height, width)` (needed for all but
            `"same"`).
        seed (`int`, *optional*, defaults to 0): seed of the initial weights (the global random state is untouched).
    """
    from ..models import build_classifier

    if isinstance(architecture, nn.Module):
        return architecture
    if architecture not in STUDENT_ARCHITECTURES:
        raise ValueError(f"Unknown student architecture {architecture!r}: choose among {list(STUDENT_ARCHITECTURES)}.")
    base = teacher.members[0] if isinstance(teacher, EnsembleModel) else teacher
    config = getattr(base, "config", None)
    if config is None or getattr(config, "num_labels", None) is None:
        raise ValueError("The teacher has no `config.num_labels`: pass the student model itself.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if architecture == "same":
            return type(base)(copy.deepcopy(config))
        if input_shape is None:
            raise ValueError(f"A {architecture!r} student needs the images' `input_shape=(channels, height, width)`.")
        sizes = {"small": dict(hidden_sizes=[8, 16], hidden_size=32), "convnext": dict(hidden_sizes=[16, 32, 64])}
        return build_classifier(
            "small_cnn" if architecture == "small" else architecture, num_labels=config.num_labels,
            input_shape=tuple(input_shape), id2label=getattr(config, "id2label", None), **sizes.get(architecture, {}),
        )
