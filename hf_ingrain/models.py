"""Small classifiers written as `PreTrainedModel`s (the default ingrainer, tiny models for demos and tests), and
[`build_classifier`], the one factory that builds every freshly initialised model of the package: the default
ingrainer, the recipes' and the benchmark's models, and the attack CLI's students.

[`register_auto_classes`] registers the small models with the `Auto*` classes, so that
`AutoModelForImageClassification` and `AutoModelForSequenceClassification` load them from a folder or the Hub
without `trust_remote_code`; the package's loaders call it, importing the package does not.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import ImageClassifierOutput, SequenceClassifierOutput


def classification_loss(logits, labels, num_items_in_batch=None):
    """Cross-entropy; with `num_items_in_batch` (gradient accumulation), the sum divided by it."""
    if labels is None:
        return None
    if num_items_in_batch is None:
        return F.cross_entropy(logits.float(), labels)
    return F.cross_entropy(logits.float(), labels, reduction="sum") / num_items_in_batch


class SmallCNNConfig(PretrainedConfig):
    r"""
    Configuration of [`SmallCNNForImageClassification`], a two-block convolutional classifier.

    Args:
        num_channels (`int`, *optional*, defaults to 1):
            Channels of the input images.
        image_size (`int`, *optional*, defaults to 28):
            Height and width of the (square) input images.
        hidden_channels (`tuple[int, int]`, *optional*, defaults to `(16, 32)`):
            Channels of the two convolution blocks.
        hidden_size (`int`, *optional*, defaults to 64):
            Width of the fully connected layer before the classifier.
        standardize_inputs (`bool`, *optional*, defaults to `False`):
            Whether to standardize each image (zero mean, unit variance) before the first convolution.
    """

    model_type = "hf_ingrain_small_cnn"

    def __init__(
        self,
        num_channels=1,
        image_size=28,
        hidden_channels=(16, 32),
        hidden_size=64,
        standardize_inputs=False,
        **kwargs,
    ):
        self.num_channels = num_channels
        self.image_size = image_size
        self.hidden_channels = list(hidden_channels)
        self.hidden_size = hidden_size
        self.standardize_inputs = standardize_inputs
        super().__init__(**kwargs)


class SmallCNNForImageClassification(PreTrainedModel):
    """A plain `nn.Module` CNN written as a `PreTrainedModel`: two conv/pool blocks, one hidden layer, a classifier.

    Example:

    ```python
    >>> from hf_ingrain.models import SmallCNNConfig, SmallCNNForImageClassification
    >>> model = SmallCNNForImageClassification(SmallCNNConfig(num_labels=10))
    ```
    """

    config_class = SmallCNNConfig
    main_input_name = "pixel_values"
    base_model_prefix = "cnn"

    def __init__(self, config: SmallCNNConfig):
        super().__init__(config)
        c1, c2 = config.hidden_channels
        self.conv1 = nn.Conv2d(config.num_channels, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        side = config.image_size // 4
        self.fc = nn.Linear(c2 * side * side, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, a=5**0.5)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / fan_in**0.5
                nn.init.uniform_(module.bias, -bound, bound)

    def forward(self, pixel_values=None, labels=None, num_items_in_batch=None, **kwargs):
        x = pixel_values
        if self.config.standardize_inputs:
            x = (x - x.mean((1, 2, 3), keepdim=True)) / (x.std((1, 2, 3), keepdim=True) + 1e-5)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        logits = self.classifier(F.relu(self.fc(x.flatten(1))))
        return ImageClassifierOutput(loss=classification_loss(logits, labels, num_items_in_batch), logits=logits)


class SmallTextConfig(PretrainedConfig):
    r"""
    Configuration of [`SmallTextForSequenceClassification`], a mean-pooled embedding classifier.

    Args:
        vocab_size (`int`, *optional*, defaults to 1000):
            Size of the token vocabulary.
        hidden_size (`int`, *optional*, defaults to 32):
            Width of the embeddings and of the hidden layer.
    """

    model_type = "hf_ingrain_small_text"

    def __init__(self, vocab_size=1000, hidden_size=32, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


class SmallTextForSequenceClassification(PreTrainedModel):
    """Mean-pooled token embeddings, one hidden layer and a classifier: the default ingrainer for text models."""

    config_class = SmallTextConfig
    main_input_name = "input_ids"
    base_model_prefix = "text"

    def __init__(self, config: SmallTextConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.hidden = nn.Linear(config.hidden_size, config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=1.0)
        elif isinstance(module, nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=5**0.5)
            nn.init.zeros_(module.bias)

    def forward(self, input_ids=None, attention_mask=None, labels=None, num_items_in_batch=None, **kwargs):
        embedded = self.embeddings(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.unsqueeze(-1).to(embedded.dtype)
        pooled = (embedded * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(torch.tanh(self.hidden(pooled)))
        return SequenceClassifierOutput(loss=classification_loss(logits, labels, num_items_in_batch), logits=logits)


def register_auto_classes() -> None:
    """Registers the small models with the `Auto*` classes (idempotent), so that `AutoConfig` and
    `AutoModelFor*Classification.from_pretrained` load their folders. The package calls it where it loads a model
    (`hf_ingrain.suspects.load_model`, `WatermarkKey.load`), never at import; call it before loading a small model's
    folder with the `Auto*` classes yourself."""
    for config_class, model_class, auto_class in (
        (SmallCNNConfig, SmallCNNForImageClassification, AutoModelForImageClassification),
        (SmallTextConfig, SmallTextForSequenceClassification, AutoModelForSequenceClassification),
    ):
        try:
            AutoConfig.register(config_class.model_type, config_class)
        except ValueError:
            pass  # already registered
        try:
            auto_class.register(config_class, model_class)
        except ValueError:
            pass


MODEL_TYPES = ("small_cnn", "resnet", "convnext", "vit", "small_text")


def build_classifier(
    model_type: str = "small_cnn",
    num_labels: int = 10,
    input_shape: tuple[int, int, int] | None = None,
    vocab_size: int | None = None,
    hidden_sizes: list[int] | None = None,
    hidden_size: int | None = None,
    depths: list[int] | None = None,
    embedding_size: int = 32,
    id2label: dict | None = None,
):
    r"""
    A freshly initialised classifier (drawn from torch's global random state: seed it first).

    Args:
        model_type (`str`, *optional*, defaults to `"small_cnn"`):
            `"small_cnn"` ([`SmallCNNForImageClassification`]), `"resnet"` (`transformers.ResNetForImageClassification`
            from a `ResNetConfig`), `"convnext"` (`transformers.ConvNextForImageClassification` from a
            `ConvNextConfig`: a stem of 2 x 2 patches, one block per stage by default), `"vit"` (`transformers.ViTForImageClassification` from a `ViTConfig`: patches of a
            quarter of the side, 4 heads) or `"small_text"` ([`SmallTextForSequenceClassification`]).
        num_labels (`int`, *optional*, defaults to 10):
            Number of classes.
        input_shape (`tuple[int, int, int]`, *optional*):
            Images: `(channels, height, width)`.
        vocab_size (`int`, *optional*):
            Text: size of the vocabulary.
        hidden_sizes (`list[int]`, *optional*):
            small_cnn: channels of its two convolution blocks (default `[16, 32]`); resnet, convnext: width of each
            stage (default `[16, 32]`).
        hidden_size (`int`, *optional*):
            small_cnn: width of the fully connected layer (default 64); vit: width of its layers (default 64);
            small_text: embedding width (default 32).
        depths (`list[int]`, *optional*):
            resnet: residual blocks per stage (default 2 per stage); convnext: blocks per stage (default 1); vit: one value, its number of layers (default 2).
        embedding_size (`int`, *optional*, defaults to 32):
            resnet: channels of the stem convolution.
        id2label (`dict[int, str]`, *optional*):
            Class names, written into the config.

    Example:

    ```python
    >>> from hf_ingrain.models import build_classifier
    >>> model = build_classifier("resnet", num_labels=10, input_shape=(3, 32, 32), hidden_sizes=[16, 32])
    ```
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"`model_type` must be one of {MODEL_TYPES}, got {model_type!r}.")
    labels = {"num_labels": num_labels}
    if id2label:
        labels.update(id2label=dict(id2label), label2id={name: int(i) for i, name in id2label.items()})
    if model_type == "small_text":
        if vocab_size is None:
            raise ValueError("A text classifier needs `vocab_size`.")
        return SmallTextForSequenceClassification(SmallTextConfig(vocab_size=vocab_size, hidden_size=hidden_size or 32, **labels))
    if input_shape is None or len(input_shape) != 3:
        raise ValueError(f"An image classifier needs `input_shape=(channels, height, width)`, got {input_shape}.")
    channels, height, width = input_shape
    hidden_sizes = list(hidden_sizes) if hidden_sizes is not None else [16, 32]
    if model_type == "small_cnn":
        if len(hidden_sizes) != 2:
            raise ValueError(
                f"small_cnn has two convolution blocks, so `hidden_sizes` needs 2 values, got {hidden_sizes}."
            )
        if height != width or height % 4:
            raise ValueError(
                f"small_cnn needs square images with a side divisible by 4, got {height}x{width}: resize the images "
                "(e.g. to 28 or 32), or use model_type='resnet'."
            )
        config = SmallCNNConfig(
            num_channels=channels, image_size=height, hidden_channels=hidden_sizes, hidden_size=hidden_size or 64,
            **labels,
        )
        return SmallCNNForImageClassification(config)
    if model_type == "vit":
        from transformers import ViTConfig

        layers = list(depths) if depths else [2]
        if len(layers) != 1 or height != width or height % 4:
            raise ValueError(
                f"vit takes one value in `depths` (its number of layers, got {layers}) and square images with a side "
                f"divisible by 4 (got {height}x{width})."
            )
        vit_width = hidden_size or 64
        config = ViTConfig(
            image_size=height, patch_size=height // 4, num_channels=channels, hidden_size=vit_width,
            num_hidden_layers=layers[0], num_attention_heads=4, intermediate_size=2 * vit_width, **labels,
        )
        return AutoModelForImageClassification.from_config(config)
    if model_type == "convnext":
        from transformers import ConvNextConfig

        depths = list(depths) if depths else [1] * len(hidden_sizes)
        if len(depths) != len(hidden_sizes):
            raise ValueError(
                f"`depths` ({depths}) and `hidden_sizes` ({hidden_sizes}) need one value per ConvNeXt stage each."
            )
        config = ConvNextConfig(
            num_channels=channels, patch_size=2, num_stages=len(hidden_sizes), hidden_sizes=hidden_sizes,
            depths=depths, image_size=height, **labels,
        )
        return AutoModelForImageClassification.from_config(config)
    from transformers import ResNetConfig

    depths = list(depths) if depths else [2] * len(hidden_sizes)
    if len(depths) != len(hidden_sizes):
        raise ValueError(f"`depths` ({depths}) and `hidden_sizes` ({hidden_sizes}) need one value per ResNet stage each.")
    config = ResNetConfig(
        num_channels=channels, embedding_size=embedding_size, hidden_sizes=hidden_sizes, depths=depths,
        layer_type="basic", **labels,
    )
    return AutoModelForImageClassification.from_config(config)
