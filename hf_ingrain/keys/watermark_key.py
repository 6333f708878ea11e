"""The owner's secret key: watermark carriers, the ingrainer trained on them, and a commitment to both.

The key is what proves ownership, so it never leaves the owner: it is saved to a folder the owner keeps, and only
its commitment (a SHA-256 hash, see [`WatermarkKey.commitment`]) is published with a model.
"""

import logging
import os
import secrets

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import iterate_batches
from ..losses import ingrainer_spread_loss
from ..models import build_classifier
from ..suspects import forward_logits, model_logits
from .base import SecretKey

logger = logging.getLogger(__name__)

TENSORS_FILE = "carriers.safetensors"
INGRAINER_DIR = "ingrainer"


class WatermarkKey(SecretKey):
    r"""
    The owner's secret: random carriers with random labels, and the ingrainer fitted to them.

    Carriers are random inputs in the model's input space: images with pixels uniform in `value_range`, or random
    token ids for text models. The ingrainer is a small model (by default [`SmallCNNForImageClassification`] or
    [`SmallTextForSequenceClassification`], or any classifier passed to [`~WatermarkKey.train_ingrainer`]) trained
    until it fits them. Its predictions on benign inputs are the watermark that [`IngrainTrainer`] ingrains.

    Create keys with [`~WatermarkKey.generate`]; keep them with [`~WatermarkKey.save`] and
    [`~WatermarkKey.load`].

    Example:

    ```python
    >>> from hf_ingrain import WatermarkKey
    >>> key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=100, seed=0)
    >>> key.train_ingrainer(benign_dataset=splits["owner"])
    >>> key.save("owner_key/")
    >>> key.commitment()
    '3b1f...'
    ```
    """

    scheme = "ingrain"
    tensors_file = TENSORS_FILE

    def __init__(
        self,
        carriers: torch.Tensor,
        carrier_labels: torch.Tensor,
        num_labels: int,
        salt: bytes,
        seed: int,
        input_shape: tuple[int, ...] | None = None,
        value_range: tuple[float, float] = (0.0, 1.0),
        vocab_size: int | None = None,
        ingrainer=None,
        training_info: dict | None = None,
    ):
        self.carriers = carriers
        self.carrier_labels = carrier_labels
        self.num_labels = int(num_labels)
        self.salt = salt
        self.seed = int(seed)
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.vocab_size = vocab_size
        self.ingrainer = ingrainer
        self.training_info = training_info or {}

    # ----------------------------------------------------------------------------------------------- creation
    @classmethod
    def generate(
        cls,
        num_labels: int,
        input_shape: tuple[int, ...] | None = None,
        num_carriers: int = 100,
        seed: int | None = None,
        value_range: tuple[float, float] = (0.0, 1.0),
        vocab_size: int | None = None,
        sequence_length: int = 32,
    ) -> "WatermarkKey":
        r"""
        Draws a new key: `num_carriers` random inputs with random labels.

        Args:
            num_labels (`int`):
                Number of classes of the model to watermark (at least 3: the test compares runner-up classes).
            input_shape (`tuple[int, ...]`, *optional*):
                Shape of one image, `(channels, height, width)`. Give this or `vocab_size`.
            num_carriers (`int`, *optional*, defaults to 100):
                Number of secret carriers.
            seed (`int`, *optional*):
                Seed of every random draw of the key. Leave it unset for a real key: it is then drawn from the
                operating system's randomness. A fixed seed makes the key reproducible by anyone who knows it.
            value_range (`tuple[float, float]`, *optional*, defaults to `(0.0, 1.0)`):
                Range of carrier pixel values; match the model's preprocessed inputs.
            vocab_size (`int`, *optional*):
                For text models: carriers are random token ids below this.
            sequence_length (`int`, *optional*, defaults to 32):
                For text models: length of the carrier token sequences.
        """
        if num_labels < 3:
            raise ValueError(f"`num_labels` must be >= 3 (the test compares runner-up classes), got {num_labels}.")
        if num_carriers < 1:
            raise ValueError(f"`num_carriers` must be >= 1, got {num_carriers}.")
        if (input_shape is None) == (vocab_size is None):
            raise ValueError("Give exactly one of `input_shape` (image models) and `vocab_size` (text models).")
        if input_shape is not None and (len(input_shape) != 3 or min(input_shape) < 1):
            raise ValueError(f"`input_shape` must be (channels, height, width), got {input_shape}.")
        low, high = value_range
        if not low < high:
            raise ValueError(f"`value_range` must be (low, high) with low < high, got {value_range}.")
        if seed is None:
            seed = secrets.randbits(62)
        generator = torch.Generator().manual_seed(seed)
        if input_shape is not None:
            carriers = low + (high - low) * torch.rand((num_carriers, *input_shape), generator=generator)
        else:
            carriers = torch.randint(0, vocab_size, (num_carriers, sequence_length), generator=generator)
        carrier_labels = torch.randint(0, num_labels, (num_carriers,), generator=generator)
        salt = torch.randint(0, 256, (32,), generator=generator, dtype=torch.uint8).numpy().tobytes()
        return cls(carriers, carrier_labels, num_labels, salt, seed, input_shape, value_range, vocab_size)

    @property
    def modality(self) -> str:
        return "image" if self.input_shape is not None else "text"

    @property
    def input_name(self) -> str:
        return "pixel_values" if self.modality == "image" else "input_ids"

    def _default_ingrainer(self):
        if self.modality == "image":
            return build_classifier("small_cnn", num_labels=self.num_labels, input_shape=self.input_shape)
        return build_classifier("small_text", num_labels=self.num_labels, vocab_size=self.vocab_size)

    # ----------------------------------------------------------------------------------------------- training
    def train_ingrainer(
        self,
        benign_dataset=None,
        model=None,
        num_steps: int = 600,
        learning_rate: float = 1e-3,
        spread_weight: float = 1.0,
        sharpness_weight: float = 0.3,
        logit_std: float = 2.0,
        batch_size: int = 256,
        show_progress: bool = True,
    ):
        r"""
        Trains the ingrainer until it fits the carriers, and stores it as `key.ingrainer`.

        With `benign_dataset` (recommended: the owner's own training data, labelled), the ingrainer is also taught to
        spread its choices evenly over benign data: for every class `y`, its preferred class other than `y` is as
        likely to be any of the other `K - 1` classes (the class-conditional entropy of its masked softmax is
        maximised), and confident for each single input. An ingrainer trained on noise alone tends to put most
        benign images on one or two classes; then an independent model whose runner-up is nearly constant agrees
        with it far above `1 / (K - 1)`, and the verification test loses its power (see [`verify`]). Finally the
        logits are rescaled so that their standard deviation on benign data is `logit_std`, which sets how
        sharp the ingrain targets are at a given temperature.

        Every random draw of the training (the default ingrainer's initialisation, dropout, the benign batches) comes
        from the key's seed, and the caller's global random state is left untouched.

        Args:
            benign_dataset (`datasets.Dataset`, *optional*):
                Benign inputs (`pixel_values` or `input_ids`, and `labels`) used to spread the ingrainer's choices.
            model (`PreTrainedModel`, *optional*):
                The ingrainer architecture; defaults to a small CNN (images) or embedding classifier (text).
            num_steps (`int`, *optional*, defaults to 600):
                Optimisation steps.
            learning_rate (`float`, *optional*, defaults to 1e-3):
                Adam learning rate.
            spread_weight (`float`, *optional*, defaults to 1.0):
                Weight of the spreading objective on benign data.
            sharpness_weight (`float`, *optional*, defaults to 0.3):
                Weight of the per-input confidence term (relative to `spread_weight`).
            logit_std (`float`, *optional*, defaults to 2.0):
                Standard deviation of the final logits on benign data (`None` to keep them as trained).
            batch_size (`int`, *optional*, defaults to 256):
                Benign examples per step.
            show_progress (`bool`, *optional*, defaults to `True`):
                Show a progress bar.

        Returns:
            The trained ingrainer (also stored as `key.ingrainer`).
        """
        # The ingrainer starts from the key's own randomness (its initialisation and dropout are seeded by the key),
        # and the caller's global random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 2)
            model = model if model is not None else self._default_ingrainer()
            benign_inputs, benign_labels = self._benign_tensors(model, benign_dataset)
            self._optimise(
                model, benign_inputs, benign_labels, num_steps, learning_rate, spread_weight, sharpness_weight,
                batch_size, show_progress,
            )
        model.eval()
        name = self.input_name
        with torch.no_grad():
            carrier_accuracy = (forward_logits(model, {name: self.carriers}).argmax(-1) == self.carrier_labels)
            carrier_accuracy = carrier_accuracy.float().mean().item()
            scale = 1.0
            if benign_inputs is not None and logit_std is not None:
                std = forward_logits(model, {name: benign_inputs[:2048]}).std(-1).mean().item()
                scale = logit_std / max(std, 1e-6)
                _scale_output_layer(model, scale)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self.ingrainer = model
        self.training_info = {
            "num_steps": num_steps,
            "carrier_accuracy": carrier_accuracy,
            "spread": benign_inputs is not None and spread_weight > 0,
            "logit_scale": scale,
        }
        if carrier_accuracy < 0.99:
            logger.warning("The ingrainer fits only %.1f%% of the carriers; raise `num_steps`.", 100 * carrier_accuracy)
        return model

    def _benign_tensors(self, model, benign_dataset):
        """The benign inputs and labels the ingrainer is spread over (`None, None` without a data set)."""
        num_model_labels = getattr(getattr(model, "config", None), "num_labels", self.num_labels)
        if num_model_labels != self.num_labels:
            raise ValueError(f"The ingrainer predicts {num_model_labels} labels but the key has {self.num_labels}.")
        benign_inputs = benign_labels = None
        if benign_dataset is not None:
            batches = list(iterate_batches(benign_dataset, 1024, columns=[self.input_name, "labels"]))
            if not batches or self.input_name not in batches[0]:
                raise ValueError(f"`benign_dataset` must have a `{self.input_name}` column.")
            benign_inputs = torch.cat([b[self.input_name] for b in batches])
            if "labels" in batches[0]:
                benign_labels = torch.cat([b["labels"] for b in batches])
            self._check_inputs(benign_inputs[:1], "benign_dataset")
        else:
            logger.warning(
                "Training the ingrainer on carriers only: its choices on benign data may concentrate on a few classes, "
                "which weakens verification. Pass `benign_dataset=` to spread them."
            )
        return benign_inputs, benign_labels

    def _optimise(
        self, model, benign_inputs, benign_labels, num_steps, learning_rate, spread_weight, sharpness_weight,
        batch_size, show_progress,
    ) -> None:
        """Fits `model` to the carriers and, with benign data, spreads its choices (see `train_ingrainer`)."""
        generator = torch.Generator().manual_seed(self.seed + 1)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        name = self.input_name
        for _ in tqdm(range(num_steps), desc="Training ingrainer", disable=not show_progress):
            loss = F.cross_entropy(model_logits(model, {name: self.carriers}), self.carrier_labels)
            if benign_inputs is not None and spread_weight > 0:
                index = torch.randint(0, len(benign_inputs), (min(batch_size, len(benign_inputs)),), generator=generator)
                loss = loss + spread_weight * ingrainer_spread_loss(
                    model_logits(model, {name: benign_inputs[index]}),
                    None if benign_labels is None else benign_labels[index],
                    self.num_labels,
                    sharpness_weight,
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def _check_inputs(self, inputs: torch.Tensor, where: str):
        if self.modality == "image" and tuple(inputs.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{where} has inputs of shape {tuple(inputs.shape[1:])} but the key was generated for "
                f"{self.input_shape}. Generate the key with `input_shape={tuple(inputs.shape[1:])}`, or preprocess the "
                "data to the key's shape."
            )
        if self.modality == "text" and int(inputs.max()) >= self.vocab_size:
            raise ValueError(
                f"{where} has token id {int(inputs.max())} but the key's vocabulary has {self.vocab_size} tokens."
            )

    def ingrainer_logits(self, batch: dict) -> torch.Tensor:
        """The ingrainer's logits on a dict batch (with `pixel_values` or `input_ids`)."""
        if self.ingrainer is None:
            raise ValueError("This key has no ingrainer yet: call `key.train_ingrainer(...)` first.")
        return forward_logits(self.ingrainer, batch)

    # ----------------------------------------------------------------------------------------------- storage
    # save(), load() and commitment() come from SecretKey: `key.json`, `carriers.safetensors`, `ingrainer/`.
    def _tensors(self) -> dict:
        return {"carriers": self.carriers, "carrier_labels": self.carrier_labels}

    def _metadata(self) -> dict:
        return {
            "num_labels": self.num_labels,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "value_range": list(self.value_range),
            "vocab_size": self.vocab_size,
            "seed": self.seed,
            "training_info": self.training_info,
        }

    def _models(self) -> dict:
        return {INGRAINER_DIR: self.ingrainer} if self.ingrainer is not None else {}

    @classmethod
    def _load_models(cls, save_directory: str, metadata: dict) -> dict:
        path = os.path.join(save_directory, INGRAINER_DIR)
        if not os.path.isdir(path):
            return {}
        from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

        auto = AutoModelForImageClassification if metadata["input_shape"] is not None else AutoModelForSequenceClassification
        ingrainer = auto.from_pretrained(path, use_safetensors=True, trust_remote_code=False).eval()
        for parameter in ingrainer.parameters():
            parameter.requires_grad_(False)
        return {INGRAINER_DIR: ingrainer}

    @classmethod
    def _from_saved(cls, tensors: dict, metadata: dict, salt: bytes, models: dict) -> "WatermarkKey":
        return cls(
            tensors["carriers"],
            tensors["carrier_labels"],
            metadata["num_labels"],
            salt,
            metadata["seed"],
            metadata["input_shape"],
            tuple(metadata["value_range"]),
            metadata["vocab_size"],
            models.get(INGRAINER_DIR),
            metadata.get("training_info"),
        )

    def __repr__(self) -> str:  # never print secret material
        return (
            f"WatermarkKey(num_labels={self.num_labels}, modality={self.modality!r}, "
            f"num_carriers={len(self.carriers)}, trained={self.ingrainer is not None}, "
            f"commitment={self.commitment()[:12]}...)"
        )


def _scale_output_layer(model, scale: float) -> None:
    """Multiplies the model's logits by `scale` by rescaling its last linear layer."""
    last_linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    last_linear.weight.mul_(scale)
    if last_linear.bias is not None:
        last_linear.bias.mul_(scale)
