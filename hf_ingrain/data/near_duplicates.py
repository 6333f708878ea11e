r"""
Near-duplicate queries: copies of one input that differ by a little (an image with pixels changed by 1/255, a sentence
in another case or spacing, padded to another length) are one piece of evidence, counted once.

[`~hf_ingrain.data.read_queries`] keeps the first of each set of near-duplicates, in the order of the queries: an
example is dropped when it is a near-duplicate of one kept before it. The rule is a fixed function of the distinct
examples and their order, so a committed set (its ordered digest) fixes which queries count.

- Images (`pixel_values`): each channel is mapped back to pixel units (0 to 1, through the key's channel ranges, which
  undo the processor's normalisation) and block-averaged to a `GRID` x `GRID` grid. Two images are near-duplicates
  when the root mean square difference of their grids is at most `RADIUS` (5/255). A block average moves by no more
  than the largest pixel change, so every copy whose pixels all differ by at most 5/255 (random or chosen) is caught,
  and so is one pixel changed arbitrarily in a 28 x 28 image (at most 1/64 ~ 4/255 on the grid). A distance with a
  radius has no rounding boundary that a 1/255 change could cross; the grids are rounded to 1/1024 and compared in
  exact integer arithmetic, so every machine drops the same queries.
- Texts (`input_ids`): the tokens under the attention mask (padding does not count) and, where the data set has a raw
  `text` or `sentence` column, that text normalised (Unicode NFKC, case-folded, punctuation removed, whitespace
  collapsed). Two texts with the same tokens or the same normalised text are near-duplicates.

Distinct inputs that happen to be this close (two nearly identical digits) are dropped as well: a collision costs a
query, never a false verdict, since dropping queries only removes evidence. Among the 1,000 MNIST test images of
`load_image_dataset("mnist-5k")`, none is dropped (the closest two are 0.022 apart); of all 5,000, 27 (0.5%).

Every new example is compared with every kept one: the time grows with the square of the number of distinct examples
(measured on two busy CPU cores: 0.5 s for 1,000 digits, 15 s for 20,000 RGB images of 32 x 32).
"""

import hashlib
import re
import unicodedata

import torch
import torch.nn.functional as F

GRID = 8  # an image is compared as GRID x GRID block averages per channel
RADIUS = 5 / 255  # near-duplicates: grids at most this far apart (root mean square, pixel units)
QUANTUM = 1024  # grids are rounded to 1/QUANTUM of the pixel range: integer distances, the same on every machine
TEXT_COLUMNS = ("text", "sentence")
BLOCK = 1024  # examples compared with the kept ones at a time


def image_grids(pixel_values: torch.Tensor, key) -> torch.Tensor:
    """The images as integer grids: per channel in pixel units (the key's channel ranges, else its value range, mapped
    to 0..1), block-averaged to `GRID` x `GRID` and rounded to 1/`QUANTUM`. Shape `(N, C * GRID * GRID)`."""
    pixels = pixel_values.detach().cpu().double()
    channels = pixels.shape[1]
    ranges = (key.preprocessing or {}).get("channel_ranges") or [key.value_range] * channels
    low = torch.tensor([float(r[0]) for r in ranges], dtype=torch.float64).view(1, -1, 1, 1)
    high = torch.tensor([float(r[1]) for r in ranges], dtype=torch.float64).view(1, -1, 1, 1)
    grids = F.adaptive_avg_pool2d((pixels - low) / (high - low), GRID)
    return torch.round(grids * QUANTUM).flatten(1).long()


def normalised_text(text: str) -> str:
    """`text` as compared for near-duplicates: NFKC, case-folded, without punctuation, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(char).startswith("P") else char for char in text)
    return re.sub(r"\s+", " ", text).strip()


def text_keys(batch: dict, rows: list[int]) -> list[tuple[bytes, ...]]:
    """Per row of `rows`: the hash of its tokens under the attention mask, and of its normalised raw text if any."""
    texts = next((batch[name] for name in TEXT_COLUMNS if isinstance(batch.get(name), list)), None)
    keys = []
    for row in rows:
        tokens = torch.as_tensor(batch["input_ids"][row]).reshape(-1).long()
        if batch.get("attention_mask") is not None:
            tokens = tokens[torch.as_tensor(batch["attention_mask"][row]).reshape(-1).bool()]
        row_keys = [hashlib.sha256(b"tokens\0" + tokens.numpy().tobytes()).digest()]
        if texts is not None and isinstance(texts[row], str):
            row_keys.append(hashlib.sha256(b"text\0" + normalised_text(texts[row]).encode()).digest())
        keys.append(tuple(row_keys))
    return keys


class NearDuplicates:
    """Collects the distinct examples of a query set in order (`add`), then says which are near-duplicates of one
    kept before them (`dropped`)."""

    def __init__(self, key):
        self.key = key
        self.grids, self.text_keys = [], []

    def add(self, batch: dict, rows: list[int]) -> None:
        """Records the rows `rows` of `batch` (the examples that are not exact repeats), in order."""
        if not rows:
            return
        if torch.is_tensor(batch.get("pixel_values")) and batch["pixel_values"].ndim == 4:
            self.grids.append(image_grids(batch["pixel_values"][torch.as_tensor(rows)], self.key))
        if batch.get("input_ids") is not None:
            self.text_keys += text_keys(batch, rows)

    def dropped(self) -> list[int]:
        """Positions (among the examples added, in order) of those dropped as near-duplicates of one kept earlier."""
        grids = torch.cat(self.grids) if self.grids else None
        count = len(grids) if grids is not None else len(self.text_keys)
        limit = RADIUS**2 * QUANTUM**2 * (grids.shape[1] if grids is not None else 0)  # squared distance, in quanta
        kept, kept_keys, dropped = [], set(), []
        for start in range(0, count, BLOCK):
            stop = min(start + BLOCK, count)
            near_kept = near_block = None
            if grids is not None:
                block = grids[start:stop].double()  # integers below 2**11: float64 products and sums are exact
                near_kept = _near_any(block, grids[kept].double(), limit)
                near_block = _squared_distances(block, block) <= limit
            kept_in_block = []
            for index in range(start, stop):
                offset = index - start
                near = near_kept is not None and bool(near_kept[offset])
                near = near or (near_block is not None and bool(near_block[offset, kept_in_block].any()))
                keys = self.text_keys[index] if self.text_keys else ()
                near = near or any(key in kept_keys for key in keys)
                if near:
                    dropped.append(index)
                else:
                    kept_in_block.append(offset)
                    kept_keys.update(keys)
            kept += [start + offset for offset in kept_in_block]
        return dropped


def _squared_distances(rows: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between integer-valued float64 rows: exact (every term is an integer below 2**53)."""
    return (rows * rows).sum(1, keepdim=True) + (others * others).sum(1) - 2 * rows @ others.T


def _near_any(rows: torch.Tensor, others: torch.Tensor, limit: float) -> torch.Tensor:
    """Per row, whether any of `others` is within `limit` (squared), `others` read `BLOCK` * 8 at a time."""
    near = torch.zeros(len(rows), dtype=torch.bool)
    for start in range(0, len(others), BLOCK * 8):
        near |= (_squared_distances(rows, others[start : start + BLOCK * 8]) <= limit).any(1)
    return near
