r"""
What a key needs to know about a model's inputs, read from the model and its processor or tokenizer
([`WatermarkKey.generate_for`]).

A key's carriers must look like the model's inputs *after* preprocessing: an image processor that converts to RGB,
rescales by 1/255 and normalises with mean 0.5 and std 0.5 gives 3 channels in [-1, 1], and a key drawn for 1 channel
in [0, 1] would train an ingrainer on inputs the model never sees. The spec read here is recorded in the key (its
`preprocessing`, covered by the commitment), and [`WatermarkKey.check_inputs`] refuses data outside it.
"""

import math

DEFAULT_TEXT_LENGTH = 128  # the official text-classification script's default `max_seq_length`


def _get(obj, name, default=None):
    value = getattr(obj, name, default)
    return default if value is None else value


def _size(value) -> tuple[int, int] | None:
    """(height, width) of a processor's `size` / `crop_size` (a dict or a `SizeDict`), when it fixes both."""
    if value is None:
        return None
    get = value.get if isinstance(value, dict) else (lambda name: getattr(value, name, None))
    if get("height") and get("width"):
        return int(get("height")), int(get("width"))
    return None


def image_spec(model, processor) -> dict:
    """`generate()` arguments for an image model and its image processor: `input_shape`, `value_range` and the
    `preprocessing` record (channel ranges after rescaling and normalisation)."""
    config = getattr(model, "config", model)
    image_processor = _get(processor, "image_processor", processor)
    channels = _get(config, "num_channels")
    if channels is None:
        raise ValueError(
            f"Cannot tell how many channels {type(model).__name__} reads (its config has no `num_channels`); use "
            "`WatermarkKey.generate(input_shape=(C, H, W), value_range=...)`."
        )
    size = None
    if image_processor is not None:
        if _get(image_processor, "do_center_crop", False):
            size = _size(_get(image_processor, "crop_size"))
        if _get(image_processor, "do_resize", True):  # without resizing, the size is the data's, not the processor's
            size = size or _size(_get(image_processor, "size"))
        shortest = getattr(_get(image_processor, "size"), "shortest_edge", None)
        if size is None and shortest and _get(image_processor, "crop_pct") is not None:  # ConvNeXt: square output
            size = (int(shortest), int(shortest))
    if size is None and _get(config, "image_size") is not None:
        image_size = config.image_size
        size = tuple(image_size) if isinstance(image_size, (list, tuple)) else (int(image_size), int(image_size))
    if size is None:
        raise ValueError(
            f"Cannot tell the image size {type(image_processor).__name__} produces (its `size` fixes no height and "
            "width); use `WatermarkKey.generate(input_shape=(C, H, W), value_range=...)`."
        )
    rescale = 1.0
    if _get(image_processor, "do_rescale", True):
        rescale = float(_get(image_processor, "rescale_factor", 1 / 255))
    mean, std = [0.0] * channels, [1.0] * channels
    if image_processor is not None and _get(image_processor, "do_normalize", False):
        mean = _per_channel(image_processor.image_mean, channels)
        std = _per_channel(image_processor.image_std, channels)
    ranges = [[(0.0 - m) / s, (255.0 * rescale - m) / s] for m, s in zip(mean, std)]
    preprocessing = {
        "modality": "image",
        "processor_class": type(image_processor).__name__ if image_processor is not None else None,
        "image_size": list(size),
        "rescale_factor": rescale,
        "image_mean": mean,
        "image_std": std,
        "channel_ranges": ranges,
    }
    value_range = (min(low for low, _ in ranges), max(high for _, high in ranges))
    return {"input_shape": (channels, *size), "value_range": value_range, "preprocessing": preprocessing}


def _per_channel(values, channels: int) -> list[float]:
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"The processor normalises {len(values)} channels but the model reads {channels}.")
    return values


def text_spec(model, tokenizer, sequence_length: int | None = None) -> dict:
    """`generate()` arguments for a text model and its tokenizer: `vocab_size`, `sequence_length` and the
    `preprocessing` record (pad token, special tokens and how a text is wrapped in them, padding side)."""
    config = getattr(model, "config", model)
    tokenizer = _get(tokenizer, "tokenizer", tokenizer)
    vocab_size = len(tokenizer)
    model_vocab = _get(config, "vocab_size")
    if model_vocab is not None and vocab_size > model_vocab:
        raise ValueError(
            f"The tokenizer has {vocab_size} tokens but the model embeds {model_vocab}: resize the model's embeddings "
            "(`model.resize_token_embeddings(len(tokenizer))`) before making its key."
        )
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "The tokenizer has no pad token, and the key's carriers are padded as the model's batches are: set one "
            "first (`tokenizer.pad_token = tokenizer.eos_token`, as the text-classification example script does)."
        )
    sample = "hello world"
    plain = list(tokenizer(sample, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(sample)["input_ids"])
    start = next((i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain), None)
    if start is None:
        raise ValueError(f"Cannot tell how {type(tokenizer).__name__} wraps a text in its special tokens.")
    limits = [DEFAULT_TEXT_LENGTH, _get(tokenizer, "model_max_length", math.inf)]
    limits.append(_get(config, "max_position_embeddings", math.inf))
    length = int(sequence_length if sequence_length is not None else min(limits))
    preprocessing = {
        "modality": "text",
        "tokenizer_class": type(tokenizer).__name__,
        "pad_token_id": int(tokenizer.pad_token_id),
        "special_token_ids": sorted({int(i) for i in tokenizer.all_special_ids}),
        "prefix_ids": full[:start],
        "suffix_ids": full[start + len(plain) :],
        "padding_side": tokenizer.padding_side,
        "max_length": length,
    }
    return {"vocab_size": vocab_size, "sequence_length": length, "preprocessing": preprocessing}


def is_text_processor(processor) -> bool:
    """Whether `processor` tokenizes text (a tokenizer, or a processor whose only input is text)."""
    return hasattr(processor, "pad_token_id") or (
        hasattr(processor, "tokenizer") and not hasattr(processor, "image_processor")
    )


def input_spec(model, processor=None, sequence_length: int | None = None) -> dict:
    """Every `generate()` argument but the carriers' number and seed, for `model` and its processor or tokenizer."""
    config = getattr(model, "config", model)
    num_labels = getattr(config, "num_labels", None)
    if num_labels is None:
        raise ValueError(f"Cannot tell how many labels {type(model).__name__} predicts: it has no `config.num_labels`.")
    if processor is not None and is_text_processor(processor):
        return {"num_labels": num_labels, **text_spec(model, processor, sequence_length)}
    if processor is None and getattr(config, "vocab_size", None) is not None:
        raise ValueError("A text model's key needs its tokenizer: `WatermarkKey.generate_for(model, tokenizer)`.")
    return {"num_labels": num_labels, **image_spec(model, processor)}
