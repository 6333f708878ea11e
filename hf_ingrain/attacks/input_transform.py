"""Input transforms on the suspect's side: every query is compressed, blurred or noised before the model sees it."""

import functools
import io
import math

import numpy as np
import torch
from torch import nn

from ..data.image_ops import gaussian_blur
from .registry import AttackSpec, BenchmarkColumns

TRANSFORMS = {"jpeg": 75, "blur": 1.0, "noise": 0.05}
"""Each transform and its default strength: JPEG quality (1-95), the blur's standard deviation in pixels, the noise's
standard deviation as a fraction of the value range."""


class TransformedInputModel(nn.Module):
    """`model` behind a transform of its main input: what a suspect's endpoint that preprocesses every query is."""

    def __init__(self, model: nn.Module, transform):
        super().__init__()
        self.model, self.transform = model, transform
        self.main_input_name = getattr(model, "main_input_name", "pixel_values")
        if getattr(model, "config", None) is not None:
            self.config = model.config

    def forward(self, **inputs):
        inputs[self.main_input_name] = self.transform(inputs[self.main_input_name])
        return self.model(**inputs)


class InputTransformAttack:
    r"""
    The suspect transforms every query before its model answers: JPEG compression, a Gaussian blur or additive
    Gaussian noise (the input-preprocessing removal attacks of the WRT toolbox, Lukas et al. 2022,
    https://huggingface.co/papers/2108.04974). The weights are not touched: the attack hopes the watermark reads
    details of the queries that the transform destroys while the task survives it.

    [`~InputTransformAttack.run`] returns the model behind the transform (a `TransformedInputModel`), which
    [`verify`] and every query function take as they take the model itself; it cannot be saved as a checkpoint (it is
    a deployment, not weights).

    Args:
        model (`PreTrainedModel` or `nn.Module`):
            The target, an image classifier.
        transform (`str`, *optional*, defaults to `"jpeg"`):
            `"jpeg"`, `"blur"` or `"noise"`.
        strength (`float`, *optional*):
            JPEG quality (1 to 95, lower is stronger; default 75), the blur's standard deviation in pixels (default
            1.0), or the noise's standard deviation as a fraction of `value_range` (default 0.05).
        value_range (`tuple[float, float]`, *optional*, defaults to `(0.0, 1.0)`):
            The range of the model's inputs, to turn them into 8-bit images for JPEG and to scale and clip the noise.
            After a processor's normalisation it is another range: pass the key's, `key.value_range`.
        seed (`int`, *optional*, defaults to 0):
            Seed of the noise.

    Example:

    ```python
    >>> from hf_ingrain import verify
    >>> from hf_ingrain.attacks import InputTransformAttack
    >>> endpoint = InputTransformAttack(model, transform="jpeg", strength=50).run()
    >>> result = verify(endpoint, key, splits["test"])
    ```
    """

    def __init__(self, model, transform: str = "jpeg", strength: float | None = None, value_range=(0.0, 1.0),
                 seed: int = 0):
        if not isinstance(model, nn.Module):
            raise ValueError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        if transform not in TRANSFORMS:
            raise ValueError(f"`transform` must be one of {list(TRANSFORMS)}, got {transform!r}.")
        strength = TRANSFORMS[transform] if strength is None else float(strength)
        if transform == "jpeg" and not 1 <= strength <= 95:
            raise ValueError(f"The JPEG quality (`strength`) must be between 1 and 95, got {strength}.")
        if transform != "jpeg" and not strength > 0:
            raise ValueError(f"The {transform}'s `strength` must be > 0, got {strength}.")
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise ValueError(f"`value_range` must be (low, high) with high > low, got {value_range}.")
        self.model, self.transform, self.strength = model, transform, strength
        self.value_range, self.seed = (low, high), seed

    @property
    def parameters(self) -> dict:
        return {"transform": self.transform, "strength": self.strength, "value_range": list(self.value_range),
                "seed": self.seed}

    def run(self) -> TransformedInputModel:
        """Returns the target behind the transform."""
        if self.transform == "noise":  # each endpoint draws its own noise, from the seed
            return TransformedInputModel(self.model, functools.partial(
                self._noise, generator=torch.Generator().manual_seed(self.seed)
            ))
        return TransformedInputModel(self.model, {"jpeg": self._jpeg, "blur": self._blur}[self.transform])

    def _jpeg(self, pixels: torch.Tensor) -> torch.Tensor:
        from PIL import Image

        low, high = self.value_range
        images = ((pixels.detach().float().cpu() - low) / (high - low) * 255).round().clamp(0, 255).to(torch.uint8)
        out = []
        for image in images.numpy():
            channels = image.shape[0]
            if channels not in (1, 3):
                raise ValueError(f"JPEG takes 1- or 3-channel images, got {channels} channels.")
            buffer = io.BytesIO()
            Image.fromarray(image[0] if channels == 1 else image.transpose(1, 2, 0)).save(
                buffer, format="JPEG", quality=int(self.strength)
            )
            decoded = np.asarray(Image.open(buffer), dtype=np.float32)
            out.append(decoded[None] if channels == 1 else decoded.transpose(2, 0, 1))
        restored = torch.from_numpy(np.stack(out)) / 255 * (high - low) + low
        return restored.to(device=pixels.device, dtype=pixels.dtype)

    def _blur(self, pixels: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(pixels, self.strength, radius=max(1, math.ceil(2 * self.strength)), padding_mode="reflect")

    def _noise(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        low, high = self.value_range
        noise = torch.randn(pixels.shape, generator=generator) * self.strength * (high - low)
        return (pixels + noise.to(device=pixels.device, dtype=pixels.dtype)).clamp(low, high)


def _column(match, teacher, context):  # <jpeg|blur|input_noise>_<strength>; the benchmark's images are in [0, 1]
    transform = {"input_noise": "noise"}.get(match[1], match[1])
    return InputTransformAttack(teacher, transform=transform, strength=float(match[2]), seed=context.seed).run()


# no subcommand: the transformed model is a deployment, not weights, and has no saved form
ATTACK = AttackSpec(
    name="input_transform",
    help="Transform every query before the model answers (JPEG, blur, additive noise).",
    columns=(
        BenchmarkColumns(
            r"(jpeg|blur|input_noise)_(\d+(?:\.\d+)?)", _column, names=("jpeg_50", "blur_1.0", "input_noise_0.1"),
        ),
    ),
)
