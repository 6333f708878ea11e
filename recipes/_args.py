"""Arguments shared by the recipes: data and model dataclasses, and `--config file.yaml` with command-line overrides.

Every recipe reads its arguments from `HfArgumentParser` dataclasses, so each field is a command-line flag
(`--learning_rate 1e-3`) and a YAML key (`learning_rate: 1.0e-3`). [`parse_args`] reads a YAML file given with
`--config` first and lets flags on the command line override it, as trl's `TrlParser` does.
"""

import argparse
import os
from dataclasses import dataclass, field
from typing import Literal

import yaml
from transformers import HfArgumentParser


@dataclass
class DataArguments:
    r"""
    Which image data set to load with `hf_ingrain.data.load_image_dataset`, split into owner / attacker / test.

    Args:
        dataset (`str`, *optional*, defaults to `"mnist-5k"`):
            `"mnist-5k"` (5,000 MNIST digits shipped with the package, offline), a Hub dataset id such as
            `"ylecun/mnist"` or `"uoft-cs/cifar10"`, or a local folder of parquet files laid out like those.
        dataset_split_seed (`int`, *optional*, defaults to 0):
            Seed of the owner / attacker / test split. Keep it equal in `ingrain.py` and `distill_attack.py`: the
            attacker's data must not overlap the owner's.
        num_channels (`int`, *optional*):
            1 (grayscale) or 3 (RGB); by default 1 for MNIST-like data sets and 3 for the others.
        image_size (`int`, *optional*):
            Resize images to this square size (default: keep the source's size).
        max_examples (`int`, *optional*):
            Keep at most this many examples of each source split (a quick run on a large data set).
    """

    dataset: str = field(
        default="mnist-5k",
        metadata={"help": "'mnist-5k' (embedded, offline), a Hub dataset id (ylecun/mnist) or a local parquet folder."},
    )
    dataset_split_seed: int = field(
        default=0, metadata={"help": "Seed of the owner/attacker/test split; keep it equal across recipes."}
    )
    num_channels: int | None = field(default=None, metadata={"help": "1 or 3 (default: 1 for MNIST, 3 otherwise)."})
    image_size: int | None = field(default=None, metadata={"help": "Resize images to this square size."})
    max_examples: int | None = field(default=None, metadata={"help": "At most this many examples per source split."})


@dataclass
class ModelArguments:
    r"""
    The architecture trained from scratch: `hf_ingrain`'s small CNN or a `transformers` ResNet, sized by flags.

    Args:
        model_type (`str`, *optional*, defaults to `"small_cnn"`):
            `"small_cnn"` ([`~hf_ingrain.models.SmallCNNForImageClassification`]) or `"resnet"`
            (`transformers.ResNetForImageClassification` built from a `ResNetConfig`).
        hidden_sizes (`list[int]`, *optional*, defaults to `[16, 32]`):
            small_cnn: channels of its two convolution blocks. resnet: width of each stage.
        hidden_size (`int`, *optional*, defaults to 64):
            small_cnn: width of the fully connected layer before the classifier.
        depths (`list[int]`, *optional*):
            resnet: residual blocks per stage (default: 2 per stage).
        embedding_size (`int`, *optional*, defaults to 32):
            resnet: channels of the stem convolution.
    """

    model_type: Literal["small_cnn", "resnet"] = field(
        default="small_cnn", metadata={"help": "'small_cnn' (hf_ingrain's CNN) or 'resnet' (transformers ResNet)."}
    )
    hidden_sizes: list[int] = field(
        default_factory=lambda: [16, 32],
        metadata={"help": "small_cnn: channels of its 2 conv blocks; resnet: width of each stage."},
    )
    hidden_size: int = field(default=64, metadata={"help": "small_cnn: width of the hidden fully connected layer."})
    depths: list[int] | None = field(default=None, metadata={"help": "resnet: blocks per stage (default 2 each)."})
    embedding_size: int = field(default=32, metadata={"help": "resnet: channels of the stem convolution."})


def build_model(model_args: ModelArguments, num_labels: int, input_shape, id2label: dict | None = None):
    """A freshly initialised classifier for images of `input_shape` `(channels, height, width)`."""
    from transformers import AutoModelForImageClassification, ResNetConfig

    from hf_ingrain.models import SmallCNNConfig, SmallCNNForImageClassification

    channels, height, width = input_shape
    labels = {"num_labels": num_labels}
    if id2label:
        labels.update(id2label=id2label, label2id={name: i for i, name in id2label.items()})
    if model_args.model_type == "small_cnn":
        if len(model_args.hidden_sizes) != 2:
            raise ValueError(
                f"small_cnn has two convolution blocks, so `hidden_sizes` needs 2 values, got "
                f"{model_args.hidden_sizes}. Pass e.g. `--hidden_sizes 16 32`."
            )
        if height != width or height % 4:
            raise ValueError(
                f"small_cnn needs square images with a side divisible by 4, got {height}x{width}. Pass "
                "`--image_size 28` (or 32), or use `--model_type resnet`."
            )
        config = SmallCNNConfig(
            num_channels=channels, image_size=height, hidden_channels=model_args.hidden_sizes,
            hidden_size=model_args.hidden_size, **labels,
        )
        return SmallCNNForImageClassification(config)
    depths = model_args.depths or [2] * len(model_args.hidden_sizes)
    if len(depths) != len(model_args.hidden_sizes):
        raise ValueError(
            f"`depths` ({depths}) and `hidden_sizes` ({model_args.hidden_sizes}) need one value per ResNet stage each."
        )
    config = ResNetConfig(
        num_channels=channels, embedding_size=model_args.embedding_size, hidden_sizes=model_args.hidden_sizes,
        depths=depths, layer_type="basic", **labels,
    )
    return AutoModelForImageClassification.from_config(config)


def load_splits(data_args: DataArguments, training_args):
    """Owner / attacker / test splits; the main process loads (and downloads) first, the others read its cache."""
    from hf_ingrain.data import load_image_dataset

    with training_args.main_process_first(local=True, desc="loading the data set"):
        return load_image_dataset(
            data_args.dataset, seed=data_args.dataset_split_seed, num_channels=data_args.num_channels,
            image_size=data_args.image_size, max_examples=data_args.max_examples,
        )


def check_processes_launched(training_args) -> None:
    """Refuses a run whose launcher started several processes that the training arguments do not see.

    `accelerate launch --multi_gpu --num_processes 2` on a machine without GPUs starts two processes, but unless the
    recipe gets `--use_cpu true` each of them trains alone, with no gradient synchronisation, and they all write to
    the same output folder.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        raise ValueError(
            f"The launcher started {launched} processes but the training arguments see {training_args.world_size}: "
            "they would train separately, without gradient synchronisation. On CPUs pass `--use_cpu true` "
            "(with `accelerate launch --multi_gpu` or `torchrun`, not `accelerate launch --cpu`)."
        )


def parse_args(dataclass_types, args: list[str] | None = None):
    r"""
    Parses `args` (default: `sys.argv[1:]`) into one instance of each dataclass, reading `--config file.yaml` first.

    Keys of the YAML file are the flag names without `--`. They become the parser's defaults, so any flag given on the
    command line overrides the file. Unknown keys and unknown flags are errors, never silently ignored.

    Args:
        dataclass_types (`list[type]`): the argument dataclasses (e.g. `[ScriptArguments, IngrainConfig]`).
        args (`list[str]`, *optional*): the command line; defaults to `sys.argv[1:]`.

    Returns:
        `tuple`: one instance per dataclass, in order.

    Example:

    ```python
    >>> script_args, training_args = parse_args(
    ...     [ScriptArguments, IngrainConfig], ["--config", "configs/mnist5k_small_cnn_cpu.yaml", "--max_steps", "5"]
    ... )
    ```
    """
    pre_parser = argparse.ArgumentParser(add_help=False)
    pre_parser.add_argument("--config")
    config_path = pre_parser.parse_known_args(args)[0].config

    parser = HfArgumentParser(dataclass_types)
    parser.add_argument(
        "--config", help="YAML file of arguments (keys are the flag names); flags given here override it."
    )
    if config_path is not None:
        if not os.path.isfile(config_path):
            raise ValueError(
                f"--config {config_path!r}: no such file. Pass the path of a YAML file, e.g. in recipes/configs/."
            )
        with open(config_path) as f:
            config = yaml.safe_load(f) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{config_path}: expected a mapping of flag names to values, got {type(config).__name__}.")
        destinations = {action.dest for action in parser._actions}
        unknown = sorted(set(config) - destinations - {"config"})
        if unknown:
            raise ValueError(
                f"{config_path}: unknown keys {unknown}. Keys are the recipe's flag names without `--`; see `--help`."
            )
        for action in parser._actions:
            if action.dest in config:
                action.required = False
        parser.set_defaults(**config)
    outputs = parser.parse_args_into_dataclasses(args=args)
    return tuple(outputs[: len(dataclass_types)])  # drop the namespace that holds `--config`


def write_json(data: dict, path: str) -> None:
    """Writes `data` to `path` through a temporary file and a rename, so a reader never sees half a file."""
    import json

    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
    os.replace(temporary, path)


def weights_digest_per_process(trainer) -> list[str]:
    """SHA-256 of the trained weights on every process (index = process rank): all equal when gradients were synced.

    Not meaningful under FSDP, where each process holds a shard of the weights; returns `[]` there.
    """
    import hashlib

    import torch

    if trainer.is_fsdp_enabled:
        return []
    model, training_args = trainer.model, trainer.args
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    digests = [digest.hexdigest()]
    if training_args.world_size > 1 and torch.distributed.is_initialized():
        digests = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(digests, digest.hexdigest())
    return digests


def finish_processes(trainer) -> None:
    """Waits for every process, then shuts the process group down cleanly.

    Without it, a rank that finishes first (the others still verifying on rank 0) tears down gloo's threads at
    interpreter exit and aborts ("terminate called without an active exception"), failing the launch.
    """
    import torch

    trainer.accelerator.wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
