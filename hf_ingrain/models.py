"""Small classifiers written as `PreTrainedModel`s: the default ingrainer, and tiny models for demos and tests.

They are registered with the `Auto*` classes when `hf_ingrain` is imported, so `AutoModelForImageClassification`
and `AutoModelForSequenceClassification` load them from a folder or the Hub without `trust_remote_code`.
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
    """Registers the small models with the `Auto*` classes (idempotent)."""
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
