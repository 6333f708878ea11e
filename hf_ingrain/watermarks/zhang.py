r"""
The trigger sets of Zhang et al. 2018, "Protecting Intellectual Property of Deep Neural Networks with
Watermarking" (AsiaCCS, https://doi.org/10.1145/3196494.3196550).

Three kinds, each labelled with one secret target class and embedded by training with the trigger set mixed in
([`embed_trigger_set`]):

- `"content"`: owner images (of other classes) with a small word-like stamp pasted in a corner. The stamp is a
  secret random binary glyph (the paper writes "TEST" on the images).
- `"noise"`: owner images with a fixed secret Gaussian noise pattern added.
- `"unrelated"`: images from another distribution: crops of the natural photographs shipped with scikit-learn
  (`load_sample_images`, offline), converted to the model's channels and size.
"""

import numpy as np
import torch

from ..extras import require
from .base import draw_seed_and_salt
from .trigger_set import TriggerSetKey

KINDS = ("content", "noise", "unrelated")


class ZhangKey(TriggerSetKey):
    r"""
    A trigger set of Zhang et al. 2018 (content, noise or unrelated), with one target label.

    Example:

    ```python
    >>> from hf_ingrain.watermarks import ZhangKey, embed_trigger_set, verify_trigger_set
    >>> key = ZhangKey.generate(splits["owner"], kind="noise", seed=0)
    >>> key.save("zhang_key/")
    ```
    """

    scheme = "zhang"

    @classmethod
    def generate(
        cls,
        owner_dataset,
        kind: str = "content",
        num_triggers: int = 100,
        target_label: int | None = None,
        seed: int | None = None,
        noise_std: float = 0.5,
        stamp_size: tuple[int, int] = (5, 9),
    ) -> "ZhangKey":
        r"""
        Draws a trigger set from the owner's images.

        Args:
            owner_dataset (`datasets.Dataset`): the owner's images (`pixel_values` in `[0, 1]`, `labels`).
            kind (`str`, *optional*, defaults to `"content"`): `"content"`, `"noise"` or `"unrelated"`.
            num_triggers (`int`, *optional*, defaults to 100): size of the trigger set.
            target_label (`int`, *optional*): the label of every trigger; drawn at random (secret) by default.
            seed (`int`, *optional*): seed of the key's draws (its salt always comes from the OS); leave unset for a
                real key (drawn from the OS): a key drawn from a known seed is not secret.
            noise_std (`float`, *optional*, defaults to 0.5): standard deviation of the `"noise"` pattern.
            stamp_size (`tuple[int, int]`, *optional*, defaults to `(5, 9)`): height and width of the `"content"`
                stamp.
        """
        from ..data import iterate_batches

        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}.")
        if num_triggers < 1:
            raise ValueError(f"`num_triggers` must be >= 1, got {num_triggers}.")
        batch = next(iterate_batches(owner_dataset, len(owner_dataset), ["pixel_values", "labels"]), {})
        if "pixel_values" not in batch or "labels" not in batch:
            raise ValueError("`owner_dataset` needs `pixel_values` and `labels` columns (see hf_ingrain.data).")
        images, labels = batch["pixel_values"].float(), batch["labels"].long()
        feature = owner_dataset.features.get("labels") if hasattr(owner_dataset, "features") else None
        num_labels = getattr(feature, "num_classes", None) or int(labels.max()) + 1
        seed, generator, salt = draw_seed_and_salt(seed)
        if target_label is None:
            target_label = int(torch.randint(0, num_labels, (1,), generator=generator))
        if not 0 <= target_label < num_labels:
            raise ValueError(f"`target_label` must be in [0, {num_labels}), got {target_label}.")
        shape = tuple(images.shape[1:])
        params = {"kind": kind, "target_label": target_label, "num_triggers": num_triggers}
        controls = pattern = None
        if kind == "unrelated":
            inputs = unrelated_images(num_triggers, shape, generator)
        else:
            candidates = (labels != target_label).nonzero().squeeze(-1)
            if len(candidates) < num_triggers:
                raise ValueError(
                    f"Only {len(candidates)} owner images outside the target class; lower `num_triggers`."
                )
            controls = images[candidates[torch.randperm(len(candidates), generator=generator)[:num_triggers]]]
            if kind == "content":
                pattern, corner = _stamp(shape, stamp_size, generator)
                params.update(stamp_size=list(stamp_size), corner=corner)
                inputs = apply_stamp(controls, pattern, corner)
            else:
                if noise_std <= 0:
                    raise ValueError(f"`noise_std` must be > 0, got {noise_std}.")
                pattern = noise_std * torch.randn(shape, generator=generator)
                params.update(noise_std=noise_std)
                inputs = (controls + pattern).clamp(0, 1)
        labels = torch.full((num_triggers,), target_label, dtype=torch.long)
        return cls(inputs, labels, num_labels, seed, salt, controls=controls, pattern=pattern, params=params)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Applies this key's trigger (`"content"` or `"noise"`) to new images in `[0, 1]`."""
        kind = self.params["kind"]
        if kind == "content":
            return apply_stamp(images, self.pattern, self.params["corner"])
        if kind == "noise":
            return (images + self.pattern).clamp(0, 1)
        raise ValueError("Only `content` and `noise` triggers apply to new images; `unrelated` ones are images.")


def _stamp(shape, stamp_size, generator):
    """A random binary glyph (at least a third of its pixels set) and the corner it goes in."""
    height, width = stamp_size
    if height + 2 > shape[1] or width + 2 > shape[2]:
        raise ValueError(f"`stamp_size` {stamp_size} does not fit images of shape {shape}.")
    glyph = torch.zeros(stamp_size)
    while glyph.mean() < 1 / 3:
        glyph = (torch.rand(stamp_size, generator=generator) < 0.5).float()
    corner = int(torch.randint(0, 4, (1,), generator=generator))
    return glyph, corner


def apply_stamp(images: torch.Tensor, glyph: torch.Tensor, corner: int) -> torch.Tensor:
    """Pastes `glyph` (all channels) one pixel away from corner `corner` (0 top-left, 1 top-right, 2 bottom-left, 3
    bottom-right)."""
    height, width = glyph.shape
    top = 1 if corner in (0, 1) else images.shape[-2] - height - 1
    left = 1 if corner in (0, 2) else images.shape[-1] - width - 1
    stamped = images.clone()
    stamped[..., top : top + height, left : left + width] = glyph
    return stamped


def unrelated_images(num_images: int, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Random crops of scikit-learn's sample photographs (offline), in the model's channels and size, in `[0, 1]`."""
    from PIL import Image
    load_sample_images = require("sklearn.datasets", "Zhang's unrelated-image triggers").load_sample_images

    channels, height, width = shape
    photos = [Image.fromarray(np.asarray(photo)) for photo in load_sample_images().images]
    out = []
    for _ in range(num_images):
        photo = photos[int(torch.randint(0, len(photos), (1,), generator=generator))]
        side = int(torch.randint(48, min(photo.size) + 1, (1,), generator=generator))
        x = int(torch.randint(0, photo.size[0] - side + 1, (1,), generator=generator))
        y = int(torch.randint(0, photo.size[1] - side + 1, (1,), generator=generator))
        crop = photo.crop((x, y, x + side, y + side)).convert("L" if channels == 1 else "RGB")
        array = np.asarray(crop.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        out.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))
