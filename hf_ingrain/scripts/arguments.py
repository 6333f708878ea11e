"""Argument dataclasses shared by the recipes and the CLI: which data set, which freshly built model."""

from dataclasses import dataclass, field
from typing import Literal

from ..data import load_image_dataset
from ..models import build_classifier


@dataclass
class DataArguments:
    r"""
    Which image data set to load with [`~hf_ingrain.data.load_image_dataset`], split into owner / attacker / test.

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

    def load_splits(self, training_args=None):
        """The owner / attacker / test splits; with `training_args`, the main process loads (and downloads) first
        and the other processes read its cache."""
        import contextlib

        first = (
            training_args.main_process_first(local=True, desc="loading the data set")
            if training_args is not None
            else contextlib.nullcontext()
        )
        with first:
            return load_image_dataset(
                self.dataset, seed=self.dataset_split_seed, num_channels=self.num_channels,
                image_size=self.image_size, max_examples=self.max_examples,
            )


@dataclass
class ModelArguments:
    r"""
    The architecture trained from scratch: `hf_ingrain`'s small CNN or a `transformers` ResNet or ViT, sized by flags
    (see [`~hf_ingrain.models.build_classifier`]).

    Args:
        model_type (`str`, *optional*, defaults to `"small_cnn"`):
            `"small_cnn"` ([`~hf_ingrain.models.SmallCNNForImageClassification`]), `"resnet"` or `"vit"`
            (`transformers.ResNetForImageClassification` / `ViTForImageClassification` built from their configs).
        hidden_sizes (`list[int]`, *optional*, defaults to `[16, 32]`):
            small_cnn: channels of its two convolution blocks. resnet: width of each stage.
        hidden_size (`int`, *optional*, defaults to 64):
            small_cnn: width of the fully connected layer before the classifier; vit: width of its layers.
        depths (`list[int]`, *optional*):
            resnet: residual blocks per stage (default: 2 per stage); vit: one value, its number of layers (default 2).
        embedding_size (`int`, *optional*, defaults to 32):
            resnet: channels of the stem convolution.
    """

    model_type: Literal["small_cnn", "resnet", "vit"] = field(
        default="small_cnn",
        metadata={"help": "'small_cnn' (hf_ingrain's CNN), 'resnet' or 'vit' (transformers ResNet / ViT)."},
    )
    hidden_sizes: list[int] = field(
        default_factory=lambda: [16, 32],
        metadata={"help": "small_cnn: channels of its 2 conv blocks; resnet: width of each stage."},
    )
    hidden_size: int = field(
        default=64, metadata={"help": "small_cnn: width of the hidden fully connected layer; vit: width of its layers."}
    )
    depths: list[int] | None = field(
        default=None, metadata={"help": "resnet: blocks per stage (default 2 each); vit: its number of layers (2)."}
    )
    embedding_size: int = field(default=32, metadata={"help": "resnet: channels of the stem convolution."})

    def build(self, num_labels: int, input_shape, id2label: dict | None = None):
        """A freshly initialised classifier for images of `input_shape` `(channels, height, width)`."""
        return build_classifier(
            self.model_type, num_labels=num_labels, input_shape=tuple(input_shape), hidden_sizes=self.hidden_sizes,
            hidden_size=self.hidden_size, depths=self.depths, embedding_size=self.embedding_size, id2label=id2label,
        )


@dataclass
class IngrainScriptArguments:
    r"""
    The arguments of `recipes/ingrain.py` that are not training arguments (also read by `docs/overhead/bench_overhead.py`,
    so that both take the same YAML files): where the owner's key lives, how a new one is drawn, and what to do with
    the trained model.

    Args:
        key_dir (`str`):
            Folder of the owner's key: loaded when it holds one, else a new key is generated and saved there. Keep it
            private and outside `--output_dir`.
        key_seed (`int`, *optional*):
            Seed of a newly generated key. Leave unset for a real key (drawn from the operating system); set it for
            reproducible experiments only, since anyone who knows the seed can rebuild the key.
        num_carriers (`int`, *optional*, defaults to 100):
            Carriers of a newly generated key.
        ingrainer_steps (`int`, *optional*, defaults to 600):
            Training steps of a newly generated key's ingrainer.
        num_reference_keys (`int`, *optional*, defaults to 16):
            Reference ingrainers of a newly generated key, for the key-draw test of `verify` (each costs one more
            ingrainer training; 0 leaves the binomial test alone, which overstates the evidence at large query counts).
        key_num_proc (`int`, *optional*, defaults to 1):
            Processes training a new key's ingrainers when their architecture cannot batch (see
            [`~WatermarkKey.train_ingrainer`]); the default ingrainers train as one batched model on every core and
            need none. Under a multi-process launch only the main process trains the key, while the others wait.
        verify_alpha (`float`, *optional*, defaults to 1e-6):
            Significance level of the verification on the test split.
        publish_repo_id (`str`, *optional*):
            Publish the trained model to this Hub repository with `hf_ingrain.hub.push_to_hub` (the model, its card
            and the key's commitment; never the key).
    """

    key_dir: str | None = field(
        default=None, metadata={"help": "Folder of the owner's key (loaded if present, else created). Keep it private."}
    )
    key_seed: int | None = field(
        default=None, metadata={"help": "Seed of a new key (experiments only; unset = OS randomness)."}
    )
    num_carriers: int = field(default=100, metadata={"help": "Carriers of a new key."})
    ingrainer_steps: int = field(default=600, metadata={"help": "Training steps of a new key's ingrainer."})
    num_reference_keys: int = field(
        default=16, metadata={"help": "Reference ingrainers of a new key, for the key-draw test of verify (0: none)."}
    )
    key_num_proc: int = field(
        default=1, metadata={"help": "Processes training a new key's ingrainers if their architecture cannot batch."}
    )
    verify_alpha: float = field(default=1e-6, metadata={"help": "Significance level of the verification."})
    publish_repo_id: str | None = field(
        default=None, metadata={"help": "Hub repo to publish to with hf_ingrain.hub.push_to_hub (commitment, no key)."}
    )

    def __post_init__(self):
        if self.key_num_proc < 1:
            raise ValueError(f"`--key_num_proc` must be >= 1 (1: the main process alone), got {self.key_num_proc}.")

    def draw_key(self, benign_dataset, num_labels: int, input_shape, seed: int | None = None, show_progress=True,
                 queries=None):
        """A new key of `num_carriers` carriers, its ingrainer trained on `benign_dataset`; not saved. With `queries`
        (the held-out test split), the key is committed to them and to the `verify_alpha` test before anything is
        trained with it (`WatermarkKey.commit_queries`): the queries of any later claim."""
        from ..keys import WatermarkKey

        key = WatermarkKey.generate(
            num_labels=num_labels, input_shape=tuple(input_shape), num_carriers=self.num_carriers,
            seed=self.key_seed if seed is None else seed,
        )
        key.train_ingrainer(
            benign_dataset=benign_dataset, num_steps=self.ingrainer_steps, num_reference_keys=self.num_reference_keys,
            show_progress=show_progress, num_proc=self.key_num_proc,
        )
        if queries is not None:
            key.commit_queries(queries, alpha=self.verify_alpha)
        return key
