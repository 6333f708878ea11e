"""Query sets of an attacker without the owner's data: what a model thief sends the stolen model to learn from it.

[`make_queries`] builds `num_queries` image inputs from one source: the attacker's own images (`"data"`, cycled with
random shifts when the budget exceeds them), another data set of the task (`"digits"`: scikit-learn's bundled 8 x 8
digits, upscaled), synthetic inputs (`"noise"`, `"strokes"`) or mixup of a handful of images (`"mixup"`). They serve
[`ExtractionAttack`]; the number of queries is the budget the attacker spends on the stolen model's API.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..extras import require

QUERY_SOURCES = ("data", "digits", "noise", "strokes", "mixup")


class QueryDataset(torch.utils.data.Dataset):
    """Inputs without labels, as a map-style data set of `{"pixel_values": tensor}` examples (what a `Trainer` takes)."""

    def __init__(self, pixel_values: torch.Tensor):
        self.pixel_values = pixel_values

    def __len__(self) -> int:
        return len(self.pixel_values)

    def __getitem__(self, index) -> dict:
        return {"pixel_values": self.pixel_values[index]}


def image_tensor(images) -> torch.Tensor:
    """The `pixel_values` of a data set (or a tensor of images) as one float tensor `(N, C, H, W)`."""
    if isinstance(images, torch.Tensor):
        pixels = images
    else:
        columns = getattr(images, "column_names", None)
        if columns is not None and "pixel_values" not in columns and getattr(images, "format", {}).get("type") != "custom":
            raise ValueError(
                f"The attacker's images need a `pixel_values` column (the model's inputs), got columns {columns}."
            )
        values = images[:]["pixel_values"]  # a transform set with `set_transform` applies here
        pixels = torch.stack([torch.as_tensor(v) for v in values]) if isinstance(values, list) else torch.as_tensor(values)
    if pixels.dim() != 4:
        raise ValueError(f"The attacker's images must be `(N, C, H, W)` pixel values, got shape {tuple(pixels.shape)}.")
    return pixels.float()


def random_shifts(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to `max_shift` pixels in each direction; the uncovered border takes the image's
    per-channel minimum (its background)."""
    if max_shift <= 0:
        return images
    n, _, height, width = images.shape
    background = images.amin(dim=(2, 3), keepdim=True)
    padded = F.pad(images - background, (max_shift,) * 4) + background
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    return torch.stack(
        [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets.tolist())]
    )


def _to_range(unit: torch.Tensor, channels: int, value_range: tuple[float, float]) -> torch.Tensor:
    """Grayscale images in [0, 1] `(N, 1, H, W)` as `channels` channels in `value_range`."""
    low, high = value_range
    return (low + (high - low) * unit).expand(-1, channels, -1, -1).contiguous()


def _digits(num_queries, height, width, generator, max_shift) -> torch.Tensor:
    load_digits = require("sklearn.datasets", "Extraction queries from scikit-learn's digits").load_digits
    digits = torch.as_tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16.0
    # framed like MNIST: the digit fills the central 20/28 of the image
    inner = (max(1, round(height * 20 / 28)), max(1, round(width * 20 / 28)))
    digits = F.interpolate(digits, size=inner, mode="bilinear", align_corners=False).clamp(0, 1)
    top, left = (height - inner[0]) // 2, (width - inner[1]) // 2
    digits = F.pad(digits, (left, width - inner[1] - left, top, height - inner[0] - top))
    return _cycle(digits, num_queries, generator, max_shift)


def _cycle(images, num_queries, generator, max_shift) -> torch.Tensor:
    """`num_queries` of `images` in a random order: each once, then again with random shifts (new inputs each time)."""
    order = torch.randperm(len(images), generator=generator)
    rounds = math.ceil(num_queries / len(images))
    chosen = torch.cat([order] * rounds)[:num_queries]
    queries = images[chosen].clone()
    if num_queries > len(images):
        queries[len(images):] = random_shifts(queries[len(images):], max_shift, generator)
    return queries


def _strokes(num_queries, height, width, generator) -> torch.Tensor:
    """1 to 4 random polylines of 2 to 4 points, white on black, a few pixels wide: digit-like scribbles."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
    scale = min(height, width) / 28
    images = np.zeros((num_queries, 1, height, width), dtype=np.float32)
    for i in range(num_queries):
        canvas = Image.new("L", (width, height))
        draw = ImageDraw.Draw(canvas)
        for _ in range(rng.integers(1, 5)):
            points = [(float(x), float(y)) for x, y in rng.uniform(0.15, 0.85, (rng.integers(2, 5), 2)) * (width, height)]
            draw.line(points, fill=255, width=max(1, int(round(rng.uniform(1.5, 3.5) * scale))), joint="curve")
        images[i, 0] = np.asarray(canvas, dtype=np.float32) / 255.0
    return torch.from_numpy(images)


def make_queries(
    source: str,
    num_queries: int,
    input_shape: tuple[int, int, int] | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    images=None,
    num_images: int | None = None,
    max_shift: int = 2,
    seed: int = 0,
) -> QueryDataset:
    r"""
    `num_queries` inputs for the stolen model, from one source the attacker has without the owner's data.

    Args:
        source (`str`):
            - `"data"`: the attacker's own images (`images`, at most `num_images` of them), in a random order, and once
              the budget exceeds them, again with random shifts of up to `max_shift` pixels (heavy augmentation).
            - `"digits"`: another data set of the task, scikit-learn's bundled 1,797 digits (8 x 8), upscaled to fill
              the central 20/28 of the image as MNIST's do, cycled like `"data"`.
            - `"noise"`: uniform noise over `value_range`.
            - `"strokes"`: 1 to 4 random polylines, white on black.
            - `"mixup"`: `lam * a + (1 - lam) * b` of two random images among `num_images` (default 10) of `images`,
              `lam` uniform in [0, 1], then shifted by up to `max_shift` pixels.
        num_queries (`int`): the query budget, >= 1.
        input_shape (`tuple[int, int, int]`, *optional*): `(channels, height, width)` of the model's inputs; defaults
            to that of `images`. Required for `"digits"`, `"noise"` and `"strokes"` without `images`.
        value_range (`tuple[float, float]`, *optional*, defaults to `(0.0, 1.0)`): where the model's pixel values lie
            (black to white) after its preprocessing: the synthetic sources and `"digits"` are drawn there.
        images (`datasets.Dataset` or `torch.Tensor`, *optional*): the attacker's images (a `pixel_values` column),
            for `"data"` and `"mixup"`.
        num_images (`int`, *optional*): how many of `images` the attacker has (default: all; 10 for `"mixup"`).
        max_shift (`int`, *optional*, defaults to 2): augmentation of cycled and mixed images, in pixels.
        seed (`int`, *optional*, defaults to 0): seed of every draw.

    Returns:
        [`QueryDataset`]: `{"pixel_values": ...}` examples without labels.
    """
    if source not in QUERY_SOURCES:
        raise ValueError(f"Unknown query source {source!r}: choose among {list(QUERY_SOURCES)}.")
    if not isinstance(num_queries, int) or num_queries < 1:
        raise ValueError(f"`num_queries` (the query budget) must be a positive integer, got {num_queries!r}.")
    if max_shift < 0:
        raise ValueError(f"`max_shift` must be >= 0 pixels, got {max_shift}.")
    low, high = value_range
    if not low < high:
        raise ValueError(f"`value_range` must be (low, high) with low < high, got {value_range}.")
    pixels = None
    if source in ("data", "mixup"):
        if images is None:
            raise ValueError(f"Query source {source!r} needs the attacker's `images` (a data set with `pixel_values`).")
        pixels = image_tensor(images)
        limit = num_images if num_images is not None else (10 if source == "mixup" else len(pixels))
        if limit < (2 if source == "mixup" else 1) or limit > len(pixels):
            raise ValueError(
                f"`num_images` must be between {2 if source == 'mixup' else 1} and the {len(pixels)} images given, "
                f"got {limit}."
            )
        pixels = pixels[:limit]
        if input_shape is not None and tuple(pixels.shape[1:]) != tuple(input_shape):
            raise ValueError(f"The images have shape {tuple(pixels.shape[1:])}, not `input_shape` {tuple(input_shape)}.")
        input_shape = tuple(pixels.shape[1:])
    elif images is not None and input_shape is None:
        input_shape = tuple(image_tensor(images).shape[1:])
    if input_shape is None or len(input_shape) != 3:
        raise ValueError(
            f"Query source {source!r} needs the model's `input_shape=(channels, height, width)`, got {input_shape}."
        )
    channels, height, width = input_shape
    generator = torch.Generator().manual_seed(seed)
    if source == "data":
        queries = _cycle(pixels, num_queries, generator, max_shift)
    elif source == "mixup":
        first = torch.randint(0, len(pixels), (num_queries,), generator=generator)
        second = torch.randint(0, len(pixels), (num_queries,), generator=generator)
        lam = torch.rand((num_queries, 1, 1, 1), generator=generator)
        queries = random_shifts(lam * pixels[first] + (1 - lam) * pixels[second], max_shift, generator)
    elif source == "digits":
        queries = _to_range(_digits(num_queries, height, width, generator, max_shift), channels, value_range)
    elif source == "noise":
        queries = low + (high - low) * torch.rand((num_queries, channels, height, width), generator=generator)
    else:
        queries = _to_range(_strokes(num_queries, height, width, generator), channels, value_range)
    return QueryDataset(queries.float().contiguous())
