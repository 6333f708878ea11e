"""[`EnsembleModel`]: several classifiers answering as one, the teacher of an ensemble-extraction attack."""

import copy

import torch
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from ..suspects import forward_logits, model_input_names


class EnsembleModel(nn.Module):
    r"""
    The average of several classifiers' predicted probabilities, answering as one model: its logits are the log of that
    average, so its softmax is the ensemble's distribution. A thief who mixes a stolen model with models of their own
    and distils a student from the mixture uses it as the teacher ([`ExtractionAttack`]'s `ensemble_with`).

    Args:
        models (`list[nn.Module]`): the members, predicting the same labels (at least 2).
        weights (`list[float]`, *optional*): each member's share of the average (default: equal); normalised to sum 1.
    """

    def __init__(self, models: list, weights: list[float] | None = None):
        super().__init__()
        if len(models) < 2:
            raise ValueError(f"An ensemble needs at least 2 models, got {len(models)}.")
        weights = [1.0] * len(models) if weights is None else list(weights)
        if len(weights) != len(models) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"`weights` must be {len(models)} non-negative numbers with a positive sum, got {weights}.")
        counts = {getattr(getattr(m, "config", None), "num_labels", None) for m in models} - {None}
        if len(counts) > 1:
            raise ValueError(f"The members predict different numbers of labels ({sorted(counts)}): they cannot be averaged.")
        self.members = nn.ModuleList(models)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32) / sum(weights), persistent=False)
        first = models[0]
        if getattr(first, "config", None) is not None:
            self.config = copy.deepcopy(first.config)
        self.main_input_name = getattr(first, "main_input_name", "pixel_values")
        self._input_names = [model_input_names(m) for m in models]

    def forward(self, pixel_values=None, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        given = dict(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask,
                     token_type_ids=token_type_ids)
        inputs = {name: value for name, value in given.items() if value is not None}
        probabilities = sum(
            weight * forward_logits(member, inputs, names).float().softmax(-1)
            for weight, member, names in zip(self.weights, self.members, self._input_names)
        )
        return ImageClassifierOutput(logits=probabilities.clamp_min(1e-12).log())
