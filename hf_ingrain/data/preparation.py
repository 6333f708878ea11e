r"""
Data as users have it, turned into what the model receives: the bridge between the official example scripts'
data sets and [`verify`] / [`WatermarkKey.train_ingrainer`].

The image- and text-classification scripts keep an image column (`image`, `img`) or a text column (`sentence`,
`text`) and a `label` column, and apply the processor or tokenizer on the fly (`set_transform`) or with `map`. A
verification must send the suspect exactly what the model received in training, so [`prepare_dataset`] applies the
model's own processor or tokenizer (read from its folder with [`load_processor`]) to the raw column, names the label
`labels`, and refuses data of another modality than the key's before any long work. [`load_data`] reads a data set
the way users keep one: a `save_to_disk` folder, csv / json / parquet files, or a `load_dataset` name.
"""

import os

IMAGE_COLUMNS = ("image", "img", "pixel_values")
TEXT_COLUMNS = ("text", "sentence", "sentence1", "content", "review")
LABEL_COLUMNS = ("labels", "label")
DATA_FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
DEFAULT_MAX_LENGTH = 128  # the text-classification example script's `max_seq_length`


def is_saved_dataset(path: str) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return os.path.isfile(os.path.join(path, "dataset_dict.json")) or os.path.isfile(os.path.join(path, "state.json"))


def load_data(name_or_path: str, split: str | None = None):
    r"""
    A data set as users keep one: a `save_to_disk` folder (a `Dataset` or a `DatasetDict`), a csv / json / jsonl /
    parquet file, a folder of such files, or a name `datasets.load_dataset` knows (online).

    Args:
        name_or_path (`str`): where the data is.
        split (`str`, *optional*): the split to return when there are several (a single one is returned as it is).
    """
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = os.fspath(name_or_path)
    if is_saved_dataset(path):
        loaded = load_from_disk(path)
    elif os.path.isfile(path):
        builder = DATA_FILE_BUILDERS.get(os.path.splitext(path)[1].lower())
        if builder is None:
            raise ValueError(f"Cannot read {path!r}: give a csv, json, jsonl or parquet file or a save_to_disk folder.")
        loaded = load_dataset(builder, data_files=path)
    else:
        loaded = load_dataset(path)
    if not isinstance(loaded, DatasetDict):
        return loaded
    if len(loaded) == 1:  # a file or a single-split folder: it is the data
        return next(iter(loaded.values()))
    if split not in loaded:
        raise ValueError(f"{path!r} has the splits {sorted(loaded)}; choose one with `split=` (`--split`).")
    return loaded[split]


def load_processor(folder: str):
    """The image processor or tokenizer saved next to a model (a Trainer's `output_dir`), or `None`: local files only,
    never repository code."""
    from transformers import AutoImageProcessor, AutoTokenizer

    if not os.path.isdir(folder):
        return None
    files = set(os.listdir(folder))
    if "preprocessor_config.json" in files:
        return AutoImageProcessor.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    if files & {"tokenizer.json", "tokenizer_config.json", "vocab.txt"}:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    return None


def _column(names, given, candidates):
    if given is not None:
        if given not in names:
            raise ValueError(f"The data set has no column {given!r}; its columns are {names}.")
        return given
    return next((name for name in candidates if name in names), None)


def prepare_dataset(
    dataset, key, processor=None, image_column: str | None = None, text_column: str | None = None,
    label_column: str | None = None, max_length: int | None = None,
):
    r"""
    `dataset` as the model receives it: the key's input column (`pixel_values`, or `input_ids` and
    `attention_mask`) and `labels` where the data has labels.

    A data set that already yields the input column (preprocessed, or with a transform that makes it) is used as it is,
    its `label` column named `labels`. A raw image column goes through the image processor (converted to the key's
    number of channels first: RGB or grayscale), a raw text column through the tokenizer (truncated and padded to
    `max_length`: by default the length the key was made for by `generate_for`, else 128, the example script's
    `max_seq_length`, or less where the tokenizer allows less).

    Args:
        dataset (`datasets.Dataset`): the data.
        key ([`WatermarkKey`]): the owner's key: its modality and input column decide what is needed.
        processor (*optional*): the model's image processor or tokenizer (see [`load_processor`]).
        image_column, text_column, label_column (`str`, *optional*): the raw columns; found by name when not given
            (`image`/`img`, `text`/`sentence`/..., `label`/`labels`).
        max_length (`int`, *optional*): text: the padded length.
    """
    names = list(getattr(dataset, "column_names", None) or [])
    if not names or key.input_name in names or getattr(dataset, "format", {}).get("type") == "custom":
        return dataset  # already model inputs, or made by a transform: `iterate_batches` reads `label` as `labels`
    image = _column(names, image_column, IMAGE_COLUMNS)
    text = _column(names, text_column, TEXT_COLUMNS)
    label = _column(names, label_column, LABEL_COLUMNS)
    if key.modality == "image" and image is None:
        raise ValueError(
            f"The key is for image models but the data set has no image column among {names}"
            + (f" (it has text in {text!r}: a text data set)" if text else "")
            + ". Name the images with `image_column=` (`--image-column`), or pass what the model receives."
        )
    if key.modality == "text" and text is None:
        raise ValueError(
            f"The key is for text models but the data set has no text column among {names}"
            + (f" (it has images in {image!r}: an image data set)" if image else "")
            + ". Name the texts with `text_column=` (`--text-column`), or pass what the model receives."
        )
    if processor is None:
        raise ValueError(
            f"The data set holds raw {key.modality}s in {image or text!r}: pass the model's "
            f"{'image processor' if key.modality == 'image' else 'tokenizer'} (`processor=`; the CLI reads the one "
            "saved in the model folder), or the data the model receives."
        )
    if key.modality == "image":
        mode = {1: "L", 3: "RGB"}.get(key.input_shape[0])

        def transform(batch):
            images = [picture.convert(mode) if mode else picture for picture in batch[image]]
            out = {"pixel_values": processor(images, return_tensors="pt")["pixel_values"]}
            if label is not None:
                out["labels"] = batch[label]
            return out
    else:
        tokenizer = getattr(processor, "tokenizer", processor)
        recorded = (key.preprocessing or {}).get("max_length")  # what `generate_for` allowed for the model
        allowed = getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH)
        length = max_length or recorded or min(DEFAULT_MAX_LENGTH, allowed)

        def transform(batch):
            encoded = tokenizer(
                batch[text], padding="max_length", truncation=True, max_length=length, return_tensors="pt"
            )
            out = {name: encoded[name] for name in ("input_ids", "attention_mask", "token_type_ids") if name in encoded}
            if label is not None:
                out["labels"] = batch[label]
            return out

    return dataset.with_transform(transform)


def _runs_on(model, shape) -> str | None:
    """`None` if `model` runs on one zero image of `shape`, else the first line of its error: what a model can take
    is what it runs on (a convolutional model takes any size whatever its config's `image_size` says; a ViT or a model
    with a fixed-size linear layer does not)."""
    import torch

    parameter = next(model.parameters(), None)
    probe = torch.zeros((1, *shape), dtype=parameter.dtype if parameter is not None and parameter.is_floating_point()
                        else torch.float32, device=parameter.device if parameter is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(pixel_values=probe)
    except Exception as error:  # any failure to run is the answer: the model cannot take these inputs
        return (str(error).strip().splitlines() or [type(error).__name__])[0]
    finally:
        model.train(was_training)
    return None


def check_model_modality(model, key) -> None:
    """Refuses a key made for images with a text model and the reverse, and a key whose input spec the model cannot
    take (another number of channels, an image size it does not run on, token ids beyond its embeddings), naming
    both. `IngrainTrainer` runs it when it starts and `verify` before any query, so they agree."""
    config = getattr(model, "config", None)
    if config is None:
        return
    main = getattr(model, "main_input_name", None)
    if main is not None and main not in ("input_ids", "pixel_values"):
        return
    is_text = main == "input_ids" or (main is None and getattr(config, "vocab_size", None) is not None)
    if is_text != (key.modality == "text"):
        raise ValueError(
            f"The key is for {key.modality} models but {type(model).__name__} reads "
            f"{'text' if is_text else 'images'}: use the key made for this model."
        )
    problem = None
    if key.modality == "image":
        channels, size = getattr(config, "num_channels", None), getattr(config, "image_size", None)
        if channels is not None and channels != key.input_shape[0]:
            problem = f"{channels} channels, the key {key.input_shape[0]}"
        elif isinstance(size, int) and (size, size) != tuple(key.input_shape[1:]):
            error = _runs_on(model, key.input_shape)  # the config's size may be a default the model does not need
            if error is not None:
                problem = f"{size}x{size} images, the key {key.input_shape[1]}x{key.input_shape[2]} ({error})"
    elif getattr(config, "vocab_size", None) is not None and key.vocab_size > config.vocab_size:
        problem = f"a vocabulary of {config.vocab_size} tokens, the key {key.vocab_size}"
    if problem:
        raise ValueError(
            f"{type(model).__name__} takes {problem}: the key was made for another model's inputs. Use the key made "
            "for this model (`WatermarkKey.generate_for(model, processor)`)."
        )
