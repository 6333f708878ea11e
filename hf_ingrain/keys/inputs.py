r"""
The inputs a key is made of and trained on, as the model receives them.

Text models read token ids *and* an attention mask. An ingrainer trained on ids alone and queried with the mask
(as [`IngrainTrainer`] and [`verify`] query it) answers differently on every padded input: on a data set with half
its tokens padding, its choices as trained and as queried disagreed on most inputs, and an ingrained model got
p = 1. So a text key's carriers carry a mask (random lengths, padded with the tokenizer's pad id, wrapped in its
special tokens when the key is made for a tokenizer), and the benign data the ingrainer is spread over keeps its
mask and token type ids, padded to one length where the rows differ.
"""

import torch

from ..data import iterate_batches
from ..hashing import tensors_sha256

TEXT_COMPANIONS = ("attention_mask", "token_type_ids")
MIN_CARRIER_FRACTION = 0.25  # shortest text carrier, as a fraction of `sequence_length`


def draw_text_carriers(
    generator: torch.Generator, num_carriers: int, vocab_size: int, sequence_length: int, preprocessing: dict | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences of random lengths (from a quarter of `sequence_length` to all of it) and their mask.

    Tokens are drawn from the vocabulary less its special tokens; with a tokenizer's `preprocessing` (see
    `hf_ingrain.keys.preprocessing`), each sequence starts and ends with its `prefix_ids` / `suffix_ids` (e.g.
    `[CLS]` ... `[SEP]`) and is padded with its `pad_token_id`, as the tokenizer would encode a text.
    """
    preprocessing = preprocessing or {}
    special = set(preprocessing.get("special_token_ids", []))
    allowed = torch.tensor([i for i in range(vocab_size) if i not in special])
    if len(allowed) == 0:
        raise ValueError("Every token of the vocabulary is a special token: no carrier can be drawn.")
    prefix, suffix = list(preprocessing.get("prefix_ids", [])), list(preprocessing.get("suffix_ids", []))
    body = sequence_length - len(prefix) - len(suffix)
    if body < 1:
        raise ValueError(
            f"`sequence_length` {sequence_length} leaves no room for a token between the tokenizer's special tokens "
            f"({len(prefix) + len(suffix)}); raise it."
        )
    shortest = max(1, int(MIN_CARRIER_FRACTION * body))
    lengths = torch.randint(shortest, body + 1, (num_carriers,), generator=generator)
    tokens = allowed[torch.randint(0, len(allowed), (num_carriers, body), generator=generator)]
    ids = torch.full((num_carriers, sequence_length), int(preprocessing.get("pad_token_id", 0)), dtype=torch.long)
    mask = torch.zeros((num_carriers, sequence_length), dtype=torch.long)
    for row, length in enumerate(lengths.tolist()):
        sequence = prefix + tokens[row, :length].tolist() + suffix
        left = preprocessing.get("padding_side") == "left"
        where = slice(sequence_length - len(sequence), None) if left else slice(0, len(sequence))
        ids[row, where] = torch.tensor(sequence, dtype=torch.long)
        mask[row, where] = 1
    return ids, mask


def carrier_batch(key) -> dict:
    """The key's carriers as a model batch: the input column, and the attention mask for a text key that has one
    (keys saved by 0.1 have none: every token counts)."""
    batch = {key.input_name: key.carriers}
    if key.modality == "text":
        mask = key.carrier_attention_mask
        batch["attention_mask"] = mask if mask is not None else torch.ones_like(key.carriers)
    return batch


def benign_inputs(key, dataset) -> tuple[dict, torch.Tensor | None]:
    """The benign inputs the ingrainer is spread over, as one batch dict (with the mask and token type ids of a text
    data set, rows of different lengths padded), and their labels (`None` without a `labels` column)."""
    columns = [key.input_name, "labels", *(TEXT_COMPANIONS if key.modality == "text" else ())]
    batches = list(iterate_batches(dataset, 1024, columns=columns))
    if not batches or key.input_name not in batches[0]:
        raise ValueError(f"`benign_dataset` must have a `{key.input_name}` column.")
    labels = torch.cat([torch.as_tensor(b["labels"]) for b in batches]) if "labels" in batches[0] else None
    if key.modality == "image":
        return {key.input_name: torch.cat([b[key.input_name] for b in batches])}, labels
    rows = {name: [] for name in (key.input_name, *TEXT_COMPANIONS) if name in batches[0]}
    for batch in batches:
        for name in rows:
            rows[name].extend(list(batch[name]))
    if "attention_mask" not in rows:
        rows["attention_mask"] = [torch.ones_like(torch.as_tensor(ids)) for ids in rows[key.input_name]]
    pad_id = int((key.preprocessing or {}).get("pad_token_id", 0))
    return {name: pad_rows(values, pad_id if name == key.input_name else 0) for name, values in rows.items()}, labels


def check_generate_arguments(num_labels, num_carriers, input_shape, vocab_size, value_range) -> None:
    """Refuses `WatermarkKey.generate` arguments that make no valid key, naming the one to fix."""
    if num_labels < 2:
        raise ValueError(f"`num_labels` must be >= 2 (a classifier's classes), got {num_labels}.")
    if num_carriers < 1:
        raise ValueError(f"`num_carriers` must be >= 1, got {num_carriers}.")
    if (input_shape is None) == (vocab_size is None):
        raise ValueError("Give exactly one of `input_shape` (image models) and `vocab_size` (text models).")
    if input_shape is not None and (len(input_shape) != 3 or min(input_shape) < 1):
        raise ValueError(f"`input_shape` must be (channels, height, width), got {input_shape}.")
    if not value_range[0] < value_range[1]:
        raise ValueError(f"`value_range` must be (low, high) with low < high, got {value_range}.")


def validate_carrier_mask(key) -> None:
    """Refuses a loaded key whose carrier mask does not fit its carriers."""
    mask = key.carrier_attention_mask
    if mask is None:
        return
    binary = ((mask == 0) | (mask == 1)).all()
    if mask.shape != key.carriers.shape or not binary or (len(mask) and mask.sum(-1).min() < 1):
        raise ValueError(
            "Invalid key: `carrier_attention_mask` must be 0s and 1s of the carriers' shape, at least one token per "
            "carrier."
        )


def check_inputs(key, inputs, where: str) -> None:
    """[`WatermarkKey.check_inputs`]: refuses inputs the key was not made for, naming them by `where`."""
    inputs = torch.as_tensor(inputs)
    if key.modality == "text":
        if inputs.numel() and (int(inputs.min()) < 0 or int(inputs.max()) >= key.vocab_size):
            raise ValueError(
                f"{where} has token ids from {int(inputs.min())} to {int(inputs.max())} but the key's vocabulary has "
                f"{key.vocab_size} tokens."
            )
        return
    if tuple(inputs.shape[1:]) != key.input_shape:
        raise ValueError(
            f"{where} has inputs of shape {tuple(inputs.shape[1:])} but the key was generated for {key.input_shape}. "
            f"Generate the key with `input_shape={tuple(inputs.shape[1:])}` (or `WatermarkKey.generate_for(model, "
            "processor)`), or preprocess the data to the key's shape."
        )
    if not inputs.numel():
        return
    low, high = key.value_range
    margin = 1e-3 * (high - low)  # 8-bit pixels rescaled or normalised in float32 land inside this
    for channel, (low_c, high_c) in enumerate((key.preprocessing or {}).get("channel_ranges") or []):
        values = inputs[:, channel]
        if float(values.min()) < low_c - margin or float(values.max()) > high_c + margin:
            raise ValueError(
                f"{where} has values from {float(values.min()):.3g} to {float(values.max()):.3g} in channel {channel}, "
                f"but the key was made for what {key.preprocessing.get('processor_class')} gives there, "
                f"[{low_c:.3g}, {high_c:.3g}]: pass the data through the model's processor (RGB, rescaling, "
                "normalisation) before the key sees it."
            )
    if float(inputs.min()) < low - margin or float(inputs.max()) > high + margin:
        raise ValueError(
            f"{where} has pixel values from {float(inputs.min()):.3g} to {float(inputs.max()):.3g} but the key was "
            f"generated for values in [{low:g}, {high:g}]: the data are not preprocessed as the key expects. Generate "
            "the key with the `value_range` of the model's preprocessed inputs (`WatermarkKey.generate_for(model, "
            "processor)` reads it), or pass the data as the model receives it."
        )


def pad_rows(rows: list, value: int) -> torch.Tensor:
    """Integer rows (tensors or lists) of possibly different lengths, right-padded with `value` into one tensor."""
    rows = [torch.as_tensor(row, dtype=torch.long) for row in rows]
    length = max(len(row) for row in rows)
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for index, row in enumerate(rows):
        out[index, : len(row)] = row
    return out


def select(batch: dict, index) -> dict:
    """The rows `index` of every tensor of a batch dict."""
    return {name: value[index] for name, value in batch.items()}


def validate_key(key, models: dict, references_dir: str) -> None:
    """Refuses a loaded [`WatermarkKey`] whose files disagree, naming the field: labels, shapes, value range,
    vocabulary, the carriers' mask, the ingrainers' labels and count, and whether the ingrainer still fits the carriers
    as `key.json` records."""
    carriers, labels = key.carriers, key.carrier_labels
    if labels.ndim != 1 or len(labels) != len(carriers) or labels.is_floating_point():
        raise ValueError(
            f"Invalid key: `carrier_labels` has shape {tuple(labels.shape)} and dtype {labels.dtype}, but there are "
            f"{len(carriers)} carriers: one integer label each."
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= key.num_labels):
        raise ValueError(
            f"Invalid key: `carrier_labels` runs from {int(labels.min())} to {int(labels.max())}, outside the "
            f"{key.num_labels} labels of `num_labels` in key.json."
        )
    if key.modality == "image":
        if tuple(carriers.shape[1:]) != key.input_shape:
            raise ValueError(
                f"Invalid key: the carriers have shape {tuple(carriers.shape[1:])} but `input_shape` in key.json is "
                f"{key.input_shape}."
            )
        low, high = key.value_range
        if len(carriers) and (float(carriers.min()) < low - 1e-6 or float(carriers.max()) > high + 1e-6):
            raise ValueError(f"Invalid key: the carriers leave `value_range` {key.value_range} of key.json.")
    elif carriers.is_floating_point() or (len(carriers) and int(carriers.max()) >= key.vocab_size):
        raise ValueError(f"Invalid key: the carriers must be token ids below `vocab_size` ({key.vocab_size}).")
    validate_carrier_mask(key)
    if key.ingrainer is None:
        return
    for name, model in models.items():
        model_labels = getattr(getattr(model, "config", None), "num_labels", key.num_labels)
        if model_labels != key.num_labels:
            raise ValueError(
                f"Invalid key: `{name}/` predicts {model_labels} labels but `num_labels` in key.json is "
                f"{key.num_labels}."
            )
    recorded_references = key.training_info.get("num_reference_keys")
    if recorded_references is not None and recorded_references != len(key.reference_ingrainers):
        raise ValueError(
            f"Invalid key: key.json records {recorded_references} reference ingrainers but `{references_dir}/` holds "
            f"{len(key.reference_ingrainers)}."
        )
    digests = [tensors_sha256(model.state_dict()) for model in models.values()]
    if len(set(digests)) < len(digests):  # a reference copied over another, or over the ingrainer
        raise ValueError(
            "Invalid key: two of its ingrainers are the same model; every reference is trained from its own seed. "
            "The folder was changed after training: use the key as it was saved, or train a new one."
        )
    recorded = key.training_info.get("carrier_accuracy")
    if recorded is not None:
        fitted = (key.ingrainer_logits(carrier_batch(key)).argmax(-1) == labels).float().mean().item()
        if fitted < recorded - 1e-6:
            raise ValueError(
                f"Invalid key: its ingrainer fits {fitted:.3f} of the carriers but key.json records "
                f"`carrier_accuracy` {recorded:.3f}: the ingrainer or the carriers were changed."
            )


def benign_digest(benign_inputs, benign_labels) -> str | None:
    """SHA-256 of the benign data an ingrainer is spread over, as it was read (inputs, mask and labels): what an audit
    checks its data against before re-training (`None` without benign data)."""
    if benign_inputs is None:
        return None
    return tensors_sha256({**{f"input:{k}": v for k, v in benign_inputs.items()}, "labels": benign_labels})
