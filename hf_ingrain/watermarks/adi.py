r"""
The trigger set of Adi et al. 2018, "Turning Your Weakness Into a Strength: Watermarking Deep Neural Networks by
Backdooring" (USENIX Security, https://huggingface.co/papers/1802.04633): abstract images with random labels.

The paper uses a fixed set of abstract pictures; here they are drawn procedurally and seeded (random ellipses,
rectangles, polygons and strokes of random intensities over a random background, drawn at 4x and downsampled), so
a key is reproducible from its seed and nothing is downloaded. Each image gets a label drawn uniformly at random,
independently of the image: that makes the chance rate `1 / K` an exact null (see [`verify_trigger_set`]).
"""

import random

import numpy as np
import torch

from .base import draw_seed_and_salt
from .trigger_set import TriggerSetKey


class AdiKey(TriggerSetKey):
    r"""
    A trigger set of Adi et al. 2018: abstract images with uniformly random labels.

    Example:

    ```python
    >>> from transformers import TrainingArguments
    >>> from hf_ingrain.watermarks import AdiKey, embed_trigger_set
    >>> key = AdiKey.generate(num_labels=10, input_shape=(1, 28, 28), seed=0)
    >>> trainer = embed_trigger_set(model, key, splits["owner"], TrainingArguments(output_dir="out", report_to="none"))
    ```
    """

    scheme = "adi"
    default_share = 1.0  # random labels are memorised, not generalised: they need many more presentations

    @classmethod
    def generate(
        cls,
        num_labels: int,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        num_triggers: int = 100,
        seed: int | None = None,
    ) -> "AdiKey":
        r"""
        Draws `num_triggers` abstract images with random labels.

        Args:
            num_labels (`int`): number of classes of the model (at least 2).
            input_shape (`tuple[int, int, int]`, *optional*, defaults to `(1, 28, 28)`): `(channels, height, width)`,
                1 or 3 channels.
            num_triggers (`int`, *optional*, defaults to 100): size of the trigger set (the paper uses 100).
            seed (`int`, *optional*): seed of the key's draws (its salt always comes from the OS); leave unset for a
                real key (drawn from the OS): a key drawn from a known seed is not secret.
        """
        if num_labels < 2:
            raise ValueError(f"`num_labels` must be >= 2, got {num_labels}.")
        if len(input_shape) != 3 or input_shape[0] not in (1, 3):
            raise ValueError(f"`input_shape` must be (1 or 3, height, width), got {input_shape}.")
        if num_triggers < 1:
            raise ValueError(f"`num_triggers` must be >= 1, got {num_triggers}.")
        seed, generator, salt = draw_seed_and_salt(seed)
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
        inputs = torch.stack([abstract_image(tuple(input_shape), rng) for _ in range(num_triggers)])
        labels = torch.randint(0, num_labels, (num_triggers,), generator=generator)
        return cls(inputs, labels, num_labels, seed, salt, params={"num_triggers": num_triggers})


def abstract_image(shape: tuple[int, int, int], rng: random.Random, scale: int = 4) -> torch.Tensor:
    """One procedurally drawn abstract image of shape `(channels, height, width)` in `[0, 1]`."""
    from PIL import Image, ImageDraw

    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    big_w, big_h = width * scale, height * scale

    def colour():
        return rng.randrange(256) if channels == 1 else tuple(rng.randrange(256) for _ in range(3))

    def point():
        return (rng.uniform(-0.1, 1.1) * big_w, rng.uniform(-0.1, 1.1) * big_h)

    image = Image.new(mode, (big_w, big_h), colour())
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 8)):
        shape_kind = rng.choice(("ellipse", "rectangle", "polygon", "line"))
        if shape_kind in ("ellipse", "rectangle"):
            (x0, y0), (x1, y1) = point(), point()
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            getattr(draw, shape_kind)(box, fill=colour())
        elif shape_kind == "polygon":
            draw.polygon([point() for _ in range(rng.randint(3, 6))], fill=colour())
        else:
            draw.line([point() for _ in range(rng.randint(2, 4))], fill=colour(), width=rng.randint(scale, 4 * scale))
    array = np.asarray(image.resize((width, height), Image.Resampling.BOX), dtype=np.float32) / 255.0
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())
