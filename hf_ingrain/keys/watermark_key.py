"""The owner's secret key: watermark carriers, the ingrainer trained on them, and a commitment to both.

The key is what proves ownership, so it never leaves the owner: it is saved to a folder the owner keeps, and only
its commitment (a SHA-256 hash, see [`WatermarkKey.commitment`]) is published with a model.
"""

import logging
import secrets

import torch

from ..data.committed_test import committed_test
from ..data.preparation import prepare_dataset
from ..data.query_set import QuerySet, read_queries
from ..suspects import forward_logits
from .base import SALT_BYTES, SecretKey, load_ingrainer_folders
from .ingrainer import train_ingrainer
from .inputs import check_generate_arguments, check_inputs, draw_text_carriers, validate_key
from .preprocessing import input_spec
from .querying import keep_committed_scores, load_committed_scores, query_ingrainers, save_committed_scores

logger = logging.getLogger(__name__)

TENSORS_FILE = "carriers.safetensors"
INGRAINER_DIR = "ingrainer"
REFERENCES_DIR = "references"
DEFAULT_REFERENCE_KEYS = 16


class WatermarkKey(SecretKey):
    r"""
    The owner's secret: random carriers with random labels, and the ingrainer fitted to them.

    Carriers are random inputs in the model's input space: images with pixels uniform in `value_range`, or random
    token sequences (with a mask) for text models. The ingrainer is a small model (by default a small CNN or
    embedding classifier, or any architecture passed to [`~WatermarkKey.train_ingrainer`] as a config), initialised
    from the key's own randomness and trained until it fits them. Its predictions on benign inputs are the watermark
    that [`IngrainTrainer`] ingrains. Create keys with [`~WatermarkKey.generate_for`] (reads the model's processor
    or tokenizer) or [`~WatermarkKey.generate`]; keep them with [`~WatermarkKey.save`] and [`~WatermarkKey.load`].

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
        *,
        input_shape: tuple[int, ...] | None = None,
        value_range: tuple[float, float] = (0.0, 1.0),
        vocab_size: int | None = None,
        ingrainer=None,
        training_info: dict | None = None,
        committed_queries: dict | None = None,
        reference_ingrainers: list | None = None,
        carrier_attention_mask: torch.Tensor | None = None,
        preprocessing: dict | None = None,
    ):
        self.carriers, self.carrier_labels, self.num_labels = carriers, carrier_labels, int(num_labels)
        self.salt, self.seed = salt, int(seed)
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.vocab_size = vocab_size
        self.ingrainer = ingrainer
        self.training_info = training_info or {}
        self.committed_queries = dict(committed_queries) if committed_queries else None
        self.reference_ingrainers = list(reference_ingrainers or [])
        self.carrier_attention_mask = carrier_attention_mask
        self.preprocessing = dict(preprocessing) if preprocessing else None

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
        preprocessing: dict | None = None,
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
                Seed of the carriers, their labels and the ingrainer's initialisation. Leave it unset for a real key
                (drawn from the operating system's randomness then): a key from a known seed is not secret.
                The salt of the commitment always comes from the operating system, so two keys drawn from the same
                seed have different commitments.
            value_range (`tuple[float, float]`, *optional*, defaults to `(0.0, 1.0)`):
                Range of carrier pixel values; match the model's preprocessed inputs.
            vocab_size (`int`, *optional*):
                For text models: carriers are random token ids below this.
            sequence_length (`int`, *optional*, defaults to 32):
                For text models: the carriers' padded length; each carrier has a random length from a quarter of it to
                all of it, and an attention mask.
            preprocessing (`dict`, *optional*):
                How the model's inputs are made (its processor or tokenizer), as [`~WatermarkKey.generate_for`]
                records it: part of the key and of its commitment. For text, its `pad_token_id`, `special_token_ids`
                and `prefix_ids` / `suffix_ids` shape the carriers.
        """
        check_generate_arguments(num_labels, num_carriers, input_shape, vocab_size, value_range)
        low, high = value_range
        if seed is None:
            seed = secrets.randbits(62)
        generator = torch.Generator().manual_seed(seed)
        if input_shape is not None:
            ranges = torch.tensor((preprocessing or {}).get("channel_ranges") or [[low, high]] * input_shape[0])
            lows, highs = ranges[:, 0].view(-1, 1, 1), ranges[:, 1].view(-1, 1, 1)  # each channel in its own range
            carriers = lows + (highs - lows) * torch.rand((num_carriers, *input_shape), generator=generator)
        else:
            carriers, mask = draw_text_carriers(generator, num_carriers, vocab_size, sequence_length, preprocessing)
        carrier_labels = torch.randint(0, num_labels, (num_carriers,), generator=generator)
        salt = secrets.token_bytes(SALT_BYTES)  # never from the seed: the commitment must not be recomputable
        return cls(
            carriers, carrier_labels, num_labels, salt, seed, input_shape=input_shape, value_range=value_range,
            vocab_size=vocab_size, carrier_attention_mask=None if input_shape is not None else mask,
            preprocessing=preprocessing,
        )

    @classmethod
    def generate_for(
        cls, model, processor=None, num_carriers: int = 100, seed: int | None = None, sequence_length: int | None = None
    ) -> "WatermarkKey":
        r"""
        Draws a new key for `model` as its processor or tokenizer feeds it (see `hf_ingrain.keys.preprocessing`):
        images get the model's channels, the processor's size and each channel's range after rescaling and
        normalisation; text gets the tokenizer's vocabulary, pad and special tokens (`[CLS] ... [SEP]`), padding side,
        and a length of `sequence_length` (default 128, the example script's `max_seq_length`, or what the model
        allows). The key records this preprocessing (in its commitment) and refuses data outside it.

        Args:
            model (`PreTrainedModel` or `PretrainedConfig`): the model to watermark, or its config.
            processor (*optional*): its image processor, tokenizer, or a processor holding one.
            num_carriers (`int`, *optional*, defaults to 100): number of secret carriers.
            seed (`int`, *optional*): as for [`~WatermarkKey.generate`] (for experiments only).
            sequence_length (`int`, *optional*): text models: the carriers' padded length.

        Example:

        ```python
        >>> from transformers import ResNetConfig, ResNetForImageClassification
        >>> from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil
        >>> from hf_ingrain import WatermarkKey
        >>> config = ResNetConfig(num_channels=3, num_labels=10, hidden_sizes=[16, 32], depths=[1, 1])
        >>> model = ResNetForImageClassification(config)
        >>> image_processor = ViTImageProcessorPil(size={"height": 28, "width": 28})  # RGB, mean 0.5, std 0.5
        >>> key = WatermarkKey.generate_for(model, image_processor)
        >>> (key.input_shape, key.value_range) == ((3, 28, 28), (-1.0, 1.0))
        True
        ```
        """
        return cls.generate(num_carriers=num_carriers, seed=seed, **input_spec(model, processor, sequence_length))

    @property
    def modality(self) -> str:
        return "image" if self.input_shape is not None else "text"

    @property
    def input_name(self) -> str:
        return "pixel_values" if self.modality == "image" else "input_ids"

    # ----------------------------------------------------------------------------------------------- training
    def train_ingrainer(
        self,
        benign_dataset=None,
        *,
        architecture=None,
        num_steps: int = 150,
        learning_rate: float = 1e-3,
        spread_weight: float = 1.0,
        sharpness_weight: float = 0.3,
        logit_std: float = 2.0,
        batch_size: int = 256,
        show_progress: bool = True,
        num_reference_keys: int = DEFAULT_REFERENCE_KEYS,
        model=None,
        processor=None,
        num_proc: int | None = None,
        device: str | torch.device | None = None,
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
        from the key's seed, and the caller's global random state is left untouched. The default ingrainer and its
        references train as one batched model (`hf_ingrain.keys.batched`): stacked on a GPU, and on a CPU each on one
        thread, the members shared out to `torch.get_num_threads()` threads. On a CPU every ingrainer is then the same
        function of its seed, bit for bit, whatever the number of threads and however many references train with it.

        Args:
            benign_dataset (`datasets.Dataset`, *optional*):
                Benign data with labels, to spread the ingrainer's choices over: model inputs, a data set with a
                transform that makes them, or raw images or texts with `processor` (as for [`verify`]).
            architecture (`PretrainedConfig`, *optional*):
                The ingrainer's architecture, as a config (e.g. `ResNetConfig(...)` or `model.config`); defaults to a
                small CNN (images) or embedding classifier (text). Only an architecture: the ingrainer always starts
                from the key's own randomness, never from trained weights (an ingrainer started from a trained
                classifier shares the natural confusions of every classifier of the task, and models that never saw
                the key would verify against it).
            num_steps (`int`, *optional*, defaults to 150): optimisation steps (600 before 0.2; measured in
                `docs/fast_keys/key_recipe.md`).
            learning_rate (`float`, *optional*, defaults to 1e-3):
                Adam learning rate.
            spread_weight (`float`, *optional*, defaults to 1.0):
                Weight of the spreading objective on benign data.
            sharpness_weight (`float`, *optional*, defaults to 0.3):
                Weight of the per-input confidence term (relative to `spread_weight`).
            logit_std (`float`, *optional*, defaults to 2.0):
                Standard deviation of the final logits on benign data (`None` to keep them as trained).
            batch_size (`int`, *optional*, defaults to 256): benign examples per step.
            show_progress (`bool`, *optional*, defaults to `True`): show a progress bar.
            num_reference_keys (`int`, *optional*, defaults to 16):
                Reference ingrainers trained by the same procedure from seeds the key's seed fixes: keys the owner
                could have drawn instead. [`verify`] compares a suspect's agreement with this key to its agreement
                with them (the key-draw test; see `hf_ingrain.verification`): without them, the p-value assumes
                independent queries, which overstates the evidence at large query counts. Each costs one more
                ingrainer training on a CPU (times in `docs/fast_keys/README.md`); on a GPU they train together with
                the ingrainer, in one pass.
            model (`nn.Module`, *optional*):
                Refused with an explanation (0.1 accepted a model here): pass its architecture, `model.config`.
            processor (*optional*): the model's image processor or tokenizer, for raw `benign_dataset` columns.
            num_proc (`int`, *optional*):
                For an `architecture` that cannot batch: spawned processes training its ingrainers, one thread each
                (in a script, call this under `if __name__ == "__main__":`), the same key bit for bit.
            device (`str` or `torch.device`, *optional*):
                Where the default ingrainers train: a GPU when there is one, else the CPU. On a GPU a member equals
                its training alone up to float rounding; on a CPU, bit for bit (pass `"cpu"` to re-derive a key
                exactly). The ingrainers are returned on the CPU.

        Returns:
            The trained ingrainer (also stored as `key.ingrainer`).
        """
        model, self.reference_ingrainers, self.training_info = train_ingrainer(
            self, benign_dataset, architecture, num_steps, learning_rate, spread_weight, sharpness_weight, logit_std,
            batch_size, show_progress, num_reference_keys, model, processor, num_proc, device,
        )
        self.ingrainer = model
        return model

    def rederive_ingrainer(self, benign_dataset=None, reference: int | None = None, processor=None):
        """The ingrainer (or reference ingrainer `reference`) trained again from the key's seed and the recipe
        `training_info` records, on the data it was trained on: on a CPU, the saved one bit for bit (an audit; see
        `hf_ingrain.keys.audit`)."""
        from .audit import rederive_ingrainer  # the audit's: re-derivation is what it checks

        return rederive_ingrainer(self, benign_dataset, reference, processor)

    def extend_references(self, num_reference_keys: int, benign_dataset=None, processor=None, show_progress=True):
        """Trains the missing reference ingrainers up to `num_reference_keys`: the key `train_ingrainer` gives with that
        many (bit for bit on a CPU). A new commitment: extend before `commit_queries` (`hf_ingrain.keys.audit`)."""
        from .audit import extend_references

        extend_references(self, num_reference_keys, benign_dataset, processor, show_progress)

    def check_inputs(self, inputs: torch.Tensor, where: str) -> None:
        """Refuses inputs the key was not made for: another image shape, pixel values outside `value_range` or, for a
        key made by `generate_for`, outside a channel's range after the processor, or token ids beyond the
        vocabulary. `where` names them in the message."""
        check_inputs(self, inputs, where)

    def commit_queries(self, dataset, processor=None, *, protocol: str = "ingrain", alpha: float = 1e-6,
                       max_queries: int | None = None, ladder: str = "occlusion", **columns) -> "QuerySet":
        r"""
        Commits the key, before any suspect is seen, to benign queries (their digests as a set and in their order,
        which fixes what a budget sends: `hf_ingrain.data.query_set`) and to the test run on them
        (`hf_ingrain.data.committed_test`), in its metadata, covered by its commitment. [`verify`] reports whether
        it ran on this set (`committed_queries`) and this test (`committed_test`); a claim stands on nothing else.

        Args:
            dataset: the queries, e.g. the owner's held-out test split; raw images or texts with `processor` and the
                column names, as for [`verify`].
            protocol, alpha, max_queries, ladder: the test, as [`verify`] takes them, chosen now for the access a
                suspect will give (`"ingrain"` needs two scores per query, `"ingrain_labels"` labels only).

        Returns:
            `QuerySet`: the digests, and the duplicates found. Commit before saving and publishing.

        Example:

        ```python
        >>> key.commit_queries(splits["test"]).ordered_digest == key.committed_queries["ordered_digest"]
        True
        ```
        """
        test = committed_test(protocol, alpha, max_queries, ladder)  # checked before the queries are read
        queries = prepare_dataset(dataset, self, processor, **columns)
        query_set = read_queries(self, queries)
        self.committed_queries = {**query_set.commitment(), "test": test}
        keep_committed_scores(self, query_set, queries)  # saved with the key: later verifications query no ingrainer
        return query_set

    def ingrainer_logits(self, batch: dict) -> torch.Tensor:
        """The ingrainer's logits on a dict batch (with `pixel_values` or `input_ids`)."""
        if self.ingrainer is None:
            raise ValueError("This key has no ingrainer yet: call `key.train_ingrainer(...)` first.")
        return forward_logits(self.ingrainer, batch)

    def ingrainer_scores(self, queries, batch_size: int = 256) -> tuple[torch.Tensor, list[torch.Tensor]]:
        r"""
        The logits of the ingrainer and of every reference ingrainer on `queries`, in the order of the queries: what
        the ingrain statistic compares a suspect with (`hf_ingrain.verification.statistics.key_agreements`).

        Args:
            queries (`datasets.Dataset` or `TensorQueries`): the benign queries, as the model receives them.
            batch_size (`int`, *optional*, defaults to 256): queries per forward pass.

        Returns:
            `tuple[torch.Tensor, list[torch.Tensor]]`: the ingrainer's logits `(n, K)`, and each reference's.
        """
        if self.ingrainer is None:
            raise ValueError("This key has no ingrainer yet: call `key.train_ingrainer(...)` first.")
        scores = query_ingrainers([self.ingrainer, *self.reference_ingrainers], queries, batch_size)
        return scores[0], scores[1:]

    # ----- storage: save(), load() and commitment() are SecretKey's (key.json, carriers.safetensors, ingrainer/)
    _save_derived, _load_derived = save_committed_scores, load_committed_scores  # outside the commitment
    def _tensors(self) -> dict:
        tensors = {"carriers": self.carriers, "carrier_labels": self.carrier_labels}
        if self.carrier_attention_mask is not None:
            tensors["carrier_attention_mask"] = self.carrier_attention_mask
        return tensors

    def _metadata(self) -> dict:
        return {
            "num_labels": self.num_labels,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "value_range": list(self.value_range),
            "vocab_size": self.vocab_size,
            "seed": self.seed,
            "training_info": self.training_info,
            **({"committed_queries": self.committed_queries} if self.committed_queries else {}),
            **({"preprocessing": self.preprocessing} if self.preprocessing else {}),
        }

    def _models(self) -> dict:
        models = {INGRAINER_DIR: self.ingrainer} if self.ingrainer is not None else {}
        models.update({f"{REFERENCES_DIR}/{i}": m for i, m in enumerate(self.reference_ingrainers)})
        return models

    @classmethod
    def _load_models(cls, save_directory: str, metadata: dict) -> dict:
        return load_ingrainer_folders(save_directory, metadata["input_shape"] is not None, INGRAINER_DIR, REFERENCES_DIR)

    @classmethod
    def _from_saved(cls, tensors: dict, metadata: dict, salt: bytes, models: dict) -> "WatermarkKey":
        return cls(
            tensors["carriers"], tensors["carrier_labels"], metadata["num_labels"], salt, metadata["seed"],
            input_shape=metadata["input_shape"], value_range=tuple(metadata["value_range"]),
            vocab_size=metadata["vocab_size"],
            ingrainer=models.get(INGRAINER_DIR), training_info=metadata.get("training_info"),
            committed_queries=metadata.get("committed_queries"),
            reference_ingrainers=[model for name, model in models.items() if name.startswith(f"{REFERENCES_DIR}/")],
            carrier_attention_mask=tensors.get("carrier_attention_mask"),
            preprocessing=metadata.get("preprocessing"),
        )

    def _validate(self) -> None:
        """Refuses a loaded key whose files disagree, naming the field (see `SecretKey._validate`)."""
        super()._validate()
        validate_key(self, self._models(), REFERENCES_DIR)

    def __repr__(self) -> str:  # never print secret material
        return (f"WatermarkKey(num_labels={self.num_labels}, modality={self.modality!r}, num_carriers="
                f"{len(self.carriers)}, trained={self.ingrainer is not None}, commitment={self.commitment()[:12]}...)")
