"""Weight quantization: uniform k-bit weights, and PyTorch's int8 dynamic quantization."""

import copy
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from .prune import prunable_weights
from .registry import AttackSpec, BenchmarkColumns

logger = logging.getLogger(__name__)

METHODS = ("uniform", "dynamic")


class QuantizeAttack:
    r"""
    Weight quantization, a compression that a model thief may apply and that may erase a watermark held in the
    weights' fine detail.

    Threat model: the attacker holds the model's weights but no data, and lowers their precision:

    - `method="uniform"`: every weight tensor of the linear and convolution layers is rounded to `2**bits` evenly
      spaced levels between its minimum and maximum (per tensor); the result is an ordinary float model, saved and
      loaded like any other, that computes with the quantized values.
    - `method="dynamic"`: `torch.ao.quantization.quantize_dynamic` on the `nn.Linear` layers (int8 weights,
      activations quantized on the fly; `bits` must be 8). The result runs on CPU and is judged by [`verify`] like
      any `nn.Module`, but it cannot be saved as safetensors. PyTorch deprecates `torch.ao.quantization` in favour
      of `torchao`; this method works while PyTorch still ships it.

    The target is not modified: [`~QuantizeAttack.run`] returns a quantized copy.

    Args:
        model (`PreTrainedModel` or `nn.Module`):
            The target.
        bits (`int`, *optional*, defaults to 8):
            Bits per weight, between 1 and 16.
        method (`str`, *optional*, defaults to `"uniform"`):
            `"uniform"` or `"dynamic"`.

    Example:

    ```python
    >>> from hf_ingrain.attacks import QuantizeAttack
    >>> quantized = QuantizeAttack(model, bits=4).run()
    ```
    """

    def __init__(self, model, bits: int = 8, method: str = "uniform"):
        if not isinstance(model, nn.Module):
            raise ValueError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
        if not (isinstance(bits, int) and 1 <= bits <= 16):
            raise ValueError(f"`bits` must be an integer between 1 and 16, got {bits!r}.")
        if method == "dynamic" and bits != 8:
            raise ValueError(
                f"Dynamic quantization is int8 only, got `bits={bits}`; use `method='uniform'` for {bits} bits."
            )
        if method == "dynamic" and not hasattr(getattr(torch.ao, "quantization", None), "quantize_dynamic"):
            raise ValueError(
                "This PyTorch no longer ships torch.ao.quantization.quantize_dynamic; use `method='uniform'`."
            )
        self.model, self.bits, self.method = model, bits, method

    @property
    def parameters(self) -> dict:
        return {"bits": self.bits, "method": self.method}

    @torch.no_grad()
    def run(self):
        """Returns a copy of the target with quantized weights."""
        model = copy.deepcopy(self.model)
        if self.method == "dynamic":
            model = torch.ao.quantization.quantize_dynamic(model.cpu(), {nn.Linear}, dtype=torch.qint8, inplace=True)
            return model.eval()
        levels = 2**self.bits - 1
        for weight in prunable_weights(model):
            values = weight.detach().float()
            low, high = values.min(), values.max()
            if high > low:
                step = (high - low) / levels
                level = torch.round((values - low) / step).clamp_(0, levels)
                weight.copy_((level * step + low).to(weight.dtype))
        logger.info("Quantized the weights to %d bits per tensor", self.bits)
        return model


@dataclass
class QuantizeArguments:
    """Uniform weight quantization (see [`~hf_ingrain.attacks.QuantizeAttack`]; its int8 `method="dynamic"` makes a
    model that cannot be saved as safetensors, so it is for Python only)."""

    bits: int = field(default=8, metadata={"help": "Bits per weight."})


def _run_cli(model, target, quantize: QuantizeArguments):
    attack = QuantizeAttack(model, bits=quantize.bits, method="uniform")
    return attack.run(), attack.parameters


def _column(match, teacher, context):  # quantize_<bits>bit
    return QuantizeAttack(teacher, bits=int(match[1]), method="uniform").run()


ATTACK = AttackSpec(
    name="quantize",
    help="Quantize its weights to k bits per tensor.",
    arguments=(QuantizeArguments,),
    run_cli=_run_cli,
    columns=(BenchmarkColumns(r"quantize_(\d+)bit", _column, names=("quantize_4bit",)),),
)
