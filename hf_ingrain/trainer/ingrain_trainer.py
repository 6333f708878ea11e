"""[`IngrainTrainer`]: a `Trainer` that ingrains the owner's watermark into the model's predictions."""

import logging
import os

import torch
from torch import nn
from transformers import Trainer

from ..data import check_model_modality, first_example
from ..hub.model_card import CARD_FILE, INGRAIN_TAGS
from ..hub.publish import publish_folder, write_watermark_card
from ..keys import KEY_FILE, WatermarkKey
from ..keys.querying import query_ingrainers
from ..losses import distillation_kl
from ..suspects import forward_logits, inference_copy, model_input_names
from .controller import IngrainWeightController
from .ingrain_config import IngrainConfig
from .mixins import AuxiliaryLossMixin, LoggedMetricsMixin, check_config
from .strength import StrengthMonitor, measure_strength, padded_examples

logger = logging.getLogger(__name__)

CACHE_COLUMN = "ingrainer_logits"


class _WithCachedLogits(torch.utils.data.Dataset):
    """A torch dataset of dicts, each extended with the ingrainer's precomputed logits."""

    def __init__(self, dataset, logits: torch.Tensor):
        self.dataset = dataset
        self.logits = logits

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return {**self.dataset[index], CACHE_COLUMN: self.logits[index]}

    def __getitems__(self, indices):  # the DataLoader's batched read: keeps `datasets`' fast path
        base = self.dataset.__getitems__(indices) if hasattr(self.dataset, "__getitems__") else [self.dataset[i] for i in indices]
        return [{**example, CACHE_COLUMN: self.logits[i]} for example, i in zip(base, indices)]


def _without_label(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`logits` with each example's label class pushed to -inf (in float32), so that a softmax renormalises over the
    other classes; examples whose label is ignored (-100) keep every class."""
    logits = logits.float()
    labels = torch.as_tensor(labels, device=logits.device)
    if labels.dim() != 1 or labels.is_floating_point() or len(labels) != len(logits):
        raise ValueError(
            "`ingrain_exclude_label=True` needs one integer class label per example (single-label classification); "
            f"these labels have shape {tuple(labels.shape)} and dtype {labels.dtype}."
        )
    valid = (labels >= 0) & (labels < logits.shape[-1])
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask[valid.nonzero().squeeze(-1), labels[valid]] = True
    return logits.masked_fill(mask, -1e4)  # exp(-1e4 / T) is exactly 0 in float32 for any T <= 100


class IngrainTrainer(AuxiliaryLossMixin, LoggedMetricsMixin, Trainer):
    r"""
    A [`~transformers.Trainer`] that trains a model on its task while ingraining the owner's watermark
    (Yang, Dang and Chang 2019, https://huggingface.co/papers/1906.06046).

    The loss on each batch is the model's own task loss plus
    `ingrain_lambda · T² · KL(softmax(g / T) ‖ softmax(f / T))`, where `g` are the frozen ingrainer's logits on the same
    batch. The watermark then lives in the model's ordinary predictions, which every distilled copy learns too, and
    [`verify`] recovers it from predictions on benign inputs. The ingrain term is normalised exactly like the task
    loss (gradient accumulation, several processes, `compute_loss_func`), so λ means the same in every setting.

    The ingrainer is secret: it is frozen, kept in eval mode and moved to the device by hand, never handed to the
    accelerator (whatever `accelerator.prepare` registers, `save_state` writes to checkpoints), so checkpoints,
    `training_args.bin` and logs hold the model alone.

    Args:
        model (`PreTrainedModel` or `nn.Module`):
            The model to train and watermark.
        args ([`IngrainConfig`]):
            Training arguments with the ingrain fields.
        ingrainer ([`WatermarkKey`] or `nn.Module`, *optional*):
            The owner's key (its trained ingrainer is used), or an ingrainer model. Without it, the key is loaded from
            the folder `args.ingrain_key` names.
        strength_dataset (`datasets.Dataset`, *optional*):
            Held-out examples (model inputs, as the training data) on which the watermark's strength is measured
            (see `hf_ingrain.trainer.strength`); defaults to `eval_dataset`, else the first training examples.
        **kwargs:
            Everything else `Trainer` takes (`train_dataset`, `eval_dataset`, `data_collator`, `callbacks`, ...).
            The training data may be a map-style or a streaming (`IterableDataset`) data set.

    Example:

    ```python
    >>> from hf_ingrain import IngrainConfig, IngrainTrainer
    >>> args = IngrainConfig(output_dir="out", ingrain_lambda=0.5, ingrain_temperature=4.0)
    >>> trainer = IngrainTrainer(model=model, args=args, train_dataset=splits["owner"], ingrainer=key)
    >>> trainer.train()
    ```
    """

    _tag_names = INGRAIN_TAGS

    def __init__(
        self, model=None, args: IngrainConfig | None = None, ingrainer=None, strength_dataset=None, **kwargs
    ):
        check_config(args, IngrainConfig, "`ingrain_lambda` and `ingrain_temperature`")
        if ingrainer is None:
            ingrainer = self._load_key(args)
        elif args.ingrain_key is not None:
            raise ValueError(
                "Both `ingrainer=` and `args.ingrain_key` name a key: pass one (drop `--ingrain_key` or `ingrainer=`)."
            )
        if isinstance(ingrainer, WatermarkKey):
            if ingrainer.ingrainer is None:
                raise ValueError("The key has no trained ingrainer: call `key.train_ingrainer(...)` first.")
            key, ingrainer_model = ingrainer, ingrainer.ingrainer
        elif isinstance(ingrainer, nn.Module):
            key, ingrainer_model = None, ingrainer
        else:
            raise ValueError(f"`ingrainer` must be a WatermarkKey or an nn.Module, got {type(ingrainer).__name__}.")
        self._check_compatible(model, ingrainer_model, key, kwargs.get("train_dataset"))
        if key is not None and key.num_labels == 2:
            _check_two_classes(args)
        if args.ingrain_cache_logits and isinstance(kwargs.get("train_dataset"), torch.utils.data.IterableDataset):
            raise ValueError(
                "`ingrain_cache_logits=True` stores one row of logits per training example, so it needs a map-style "
                "data set; this one streams (an IterableDataset). Set `ingrain_cache_logits=False`."
            )
        super().__init__(model=model, args=args, **kwargs)
        self._watermark_key = key  # kept in memory only, for the commitment on the model card
        ingrainer_model.eval()
        for parameter in ingrainer_model.parameters():
            parameter.requires_grad_(False)
        # never through the accelerator (see the docstring); a channels-last copy for convolutions (inference_copy)
        self.ingrainer = inference_copy(ingrainer_model).to(self.args.device)
        self._ingrainer_inputs = model_input_names(ingrainer_model)
        self._init_metrics()
        if args.ingrain_cache_logits and self.train_dataset is not None:
            self.train_dataset = self._cache_ingrainer_logits(self.train_dataset)
        self.watermark_strength = None  # the last WatermarkStrength measured (see `hf_ingrain.trainer.strength`)
        self._strength_dataset, self._strength_examples = strength_dataset, None
        if args.ingrain_lambda_mode == "auto":
            if self.is_fsdp_enabled or self.is_deepspeed_enabled:
                raise ValueError(
                    "`ingrain_lambda_mode='auto'` measures the watermark during training, which sharded weights "
                    "(FSDP, DeepSpeed) do not allow here: use `ingrain_lambda_mode='fixed'`."
                )
            if key is None:
                raise ValueError(
                    "`ingrain_lambda_mode='auto'` measures the watermark with the key's test, so it needs the key "
                    "(`ingrainer=key` or `ingrain_key`), not an ingrainer model alone."
                )
            self.add_callback(IngrainWeightController(args.ingrain_lambda, args.ingrain_target_log10_p))
        self.add_callback(StrengthMonitor(self))

    # ------------------------------------------------------------------------------------------- validation
    @staticmethod
    def _load_key(args) -> WatermarkKey:
        if args.ingrain_key is None:
            raise ValueError(
                "Pass the owner's key as `ingrainer=key`, or its folder as `IngrainConfig(ingrain_key=DIR)` "
                "(`--ingrain_key DIR` on a script's command line)."
            )
        if not os.path.isfile(os.path.join(args.ingrain_key, KEY_FILE)):
            raise ValueError(
                f"`ingrain_key` ({args.ingrain_key}) holds no {KEY_FILE}: name the folder a key was saved to with "
                "`key.save(DIR)`."
            )
        return WatermarkKey.load(args.ingrain_key)

    @staticmethod
    def _check_compatible(model, ingrainer_model, key, train_dataset):
        if model is None:
            raise ValueError("Pass the model to train as `model=`.")
        model_labels = getattr(getattr(model, "config", None), "num_labels", None)
        ingrainer_labels = getattr(getattr(ingrainer_model, "config", None), "num_labels", None)
        if key is not None:
            ingrainer_labels = key.num_labels
        if model_labels is not None and ingrainer_labels is not None and model_labels != ingrainer_labels:
            raise ValueError(
                f"The model predicts {model_labels} labels but the ingrainer predicts {ingrainer_labels}. Generate the "
                f"key with `num_labels={model_labels}`, or build the model with `num_labels={ingrainer_labels}`."
            )
        if key is not None:
            check_model_modality(model, key)  # what verify() will ask of the model, asked before any training
        example = first_example(train_dataset)
        if key is not None and example is not None:
            if key.input_name not in example:
                raise ValueError(
                    f"The key is for {key.modality} models and needs `{key.input_name}` in every example, but the "
                    f"training examples have {sorted(example)}."
                )
            key.check_inputs(torch.as_tensor(example[key.input_name]).unsqueeze(0), "The training data")

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if CACHE_COLUMN not in self._signature_columns:
            self._signature_columns.append(CACHE_COLUMN)

    # ------------------------------------------------------------------------------------------- logits cache
    def _cache_ingrainer_logits(self, dataset):
        """Precomputes the ingrainer's logits on every training example (deterministic pipelines only)."""
        if len(dataset) == 0:
            return dataset
        first, again = dataset[0], dataset[0]
        for name in self._ingrainer_inputs or first:
            if name in first and not torch.equal(torch.as_tensor(first[name]), torch.as_tensor(again[name])):
                raise ValueError(
                    "`ingrain_cache_logits=True` needs a deterministic input pipeline, but the first training example "
                    "changed between two reads (random augmentation?). Set `ingrain_cache_logits=False`."
                )
        if hasattr(dataset, "column_names") and self.args.remove_unused_columns:
            dataset = self._remove_unused_columns(dataset, description="training")
        batch_size = max(self.args.per_device_eval_batch_size, 256)  # one inference pass: large batches
        return _WithCachedLogits(dataset, query_ingrainers([self.ingrainer], dataset, batch_size)[0])

    # ------------------------------------------------------------------------------------------- loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        cached_logits = inputs.pop(CACHE_COLUMN, None)
        labels = inputs.get("labels")
        # labelled items of this batch, as a tensor: reading it as a number would wait for the device every step
        local_items = (labels != -100).sum() if torch.is_tensor(labels) else None
        if cached_logits is None:
            ingrainer_logits = forward_logits(self.ingrainer, inputs, self._ingrainer_inputs)
        else:
            ingrainer_logits = cached_logits
        task_loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[1]
        per_example = self.ingrain_loss(logits, ingrainer_logits.detach(), labels)
        if model.training:
            ingrain_loss = self._reduce_per_example(per_example, num_items_in_batch, model.training)
            loss = task_loss + self.ingrain_weight() * ingrain_loss
        else:  # `eval_loss` (and `metric_for_best_model="loss"`) is the task's; the ingrain term is logged apart
            loss = task_loss

        self._record_metric(model, "task/loss", self._task_loss_per_batch(task_loss, num_items_in_batch, local_items))
        self._record_metric(model, "ingrain/loss", per_example)
        return (loss, outputs) if return_outputs else loss

    def ingrain_loss(self, logits: torch.Tensor, ingrainer_logits: torch.Tensor, labels=None) -> torch.Tensor:
        """The ingrain term per example: `T² · KL(softmax(s · g / T) ‖ softmax(f / T))`, `s` the
        `ingrain_target_scale`, over the classes other than the label with `ingrain_exclude_label`. Override it to try
        another form of the loss (`docs/arch_cost/arch_cost.py` does, to measure variants)."""
        targets = ingrainer_logits * self.args.ingrain_target_scale
        if self.args.ingrain_exclude_label and labels is not None:
            logits, targets = _without_label(logits, labels), _without_label(targets, labels)
        return distillation_kl(logits, targets, self.args.ingrain_temperature, reduction="none")

    def ingrain_weight(self) -> float:
        """The weight of the ingrain term at the current step: `ingrain_lambda`, or the controller's λ with
        `ingrain_lambda_mode="auto"`. Override it for a schedule."""
        controller = self.weight_controller
        return self.args.ingrain_lambda if controller is None else controller.weight

    @property
    def weight_controller(self):
        """The [`~hf_ingrain.trainer.controller.IngrainWeightController`] of `ingrain_lambda_mode="auto"` (looked up
        among the callbacks: resuming may replace it), else `None`."""
        callbacks = getattr(getattr(self, "callback_handler", None), "callbacks", ())
        return next((c for c in callbacks if isinstance(c, IngrainWeightController)), None)

    # ------------------------------------------------------------------------------------------- strength
    def measure_watermark_strength(self, dataset=None, source: str | None = None, scores: bool = False):
        r"""
        The watermark's strength in the model now ([`~hf_ingrain.trainer.strength.WatermarkStrength`]): the key's own
        test on the first `args.ingrain_strength_examples` examples of `dataset` (default: `strength_dataset`, else
        `eval_dataset`, else the training data), collated as the trainer collates them. `None` without a key (an
        ingrainer model alone has no test) or without examples. Every process measures the same examples. With
        `scores`, when the key's test is not predicted to pass, the scores protocol's p-value on them too
        (`WatermarkStrength.scores_p_value`).
        """
        if self._watermark_key is None or not self.args.ingrain_strength_examples:
            return None
        if dataset is not None:
            examples = self._padded(dataset)
            source = source or "strength_dataset"
        else:
            source, dataset = self._strength_source()
            if dataset is None:
                return None
            if self._strength_examples is None:  # read once: the same examples at every measurement
                self._strength_examples = self._padded(dataset)
            examples = self._strength_examples
        if not examples:
            return None
        return measure_strength(self.model, self._watermark_key, examples, source=source, step=self.state.global_step,
                                batch_size=max(self.args.per_device_eval_batch_size, 64), scores=scores)

    def _strength_source(self) -> tuple:
        if self._strength_dataset is not None:
            return "strength_dataset", self._strength_dataset
        eval_dataset = self.eval_dataset
        if isinstance(eval_dataset, dict):
            eval_dataset = next(iter(eval_dataset.values()), None)
        if eval_dataset is not None:
            return "eval_dataset", eval_dataset
        return "train_dataset", self.train_dataset

    def _padded(self, dataset) -> list[dict]:
        collator = self._get_collator_with_removed_columns(self.data_collator, description="watermark strength")
        return padded_examples(dataset, collator, self.args.ingrain_strength_examples, drop=(CACHE_COLUMN,))

    def create_model_card(self, model_name=None, tags=None, key=None, verification_dataset=None, **kwargs):
        r"""
        Writes the ingrain model card (`README.md` and `watermark.json`, see [`hf_ingrain.hub.push_to_hub`]) into
        `args.output_dir`: what `Trainer.create_model_card` writes (base model from `finetuned_from`, datasets,
        metrics, model-index, hyperparameters; every argument of it is taken) merged with the watermark block: the
        key's commitment and, with `verification_dataset`, the verification at publication. The card is written by
        the hub room's one card writer ([`hf_ingrain.hub.publish.write_watermark_card`]).
        """
        if not self.is_world_process_zero():
            return
        from huggingface_hub import ModelCard

        super().create_model_card(model_name=model_name, tags=tags, **kwargs)
        card_path = os.path.join(self.args.output_dir, CARD_FILE)
        write_watermark_card(
            self.args.output_dir, self.accelerator.unwrap_model(self.model),
            key if key is not None else self._watermark_key, verification_dataset,
            trainer_card=ModelCard.load(card_path) if os.path.isfile(card_path) else None, model_name=model_name,
            tags=tags, repo_id=getattr(self, "hub_model_id", None), ingrain_lambda=self.ingrain_weight(),
            ingrain_temperature=self.args.ingrain_temperature,
            training_strength=None if self.watermark_strength is None else self.watermark_strength.to_dict(),
        )

    # ------------------------------------------------------------------------------------------- publishing
    def push_to_hub(self, commit_message="End of training", blocking=True, token=None, revision=None, private=None,
                    verification_dataset=None, key=None, **kwargs):
        r"""
        Publishes the model like `Trainer.push_to_hub`, through the hub room's publisher
        ([`hf_ingrain.hub.publish.publish_folder`], as [`hf_ingrain.hub.push_to_hub`] does): the weights as
        safetensors, the config, the processor or tokenizer files, the merged card and `watermark.json`, in one commit.
        Never `training_args.bin` (a pickle, which also holds every argument), `trainer_state.json`, results files or
        checkpoints.

        Args:
            verification_dataset (`datasets.Dataset`, *optional*):
                Benign queries (e.g. the test split): the model is verified on them and the result goes in the card.
            key ([`WatermarkKey`], *optional*):
                Defaults to the key the trainer was built with; only its commitment is published.
            **kwargs:
                `commit_message`, `blocking`, `token`, `revision`, `private` and every argument of
                `Trainer.create_model_card` (`finetuned_from`, `tasks`, `dataset`, `tags`, ...), as for `Trainer`.
        """
        model_name = kwargs.pop("model_name", None)
        if model_name is None and self.args.should_save:
            model_name = (self.args.hub_model_id or self.args.output_dir.rstrip("/")).split("/")[-1]
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        tags = kwargs.pop("tags", None)
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        tags += [tag for tag in getattr(self.model, "model_tags", None) or [] if tag not in tags]
        self.create_model_card(model_name=model_name, tags=tags, key=key, verification_dataset=verification_dataset,
                               **kwargs)
        self._finish_current_push()
        return publish_folder(
            self.args.output_dir, self.hub_model_id, token=token, private=private, commit_message=commit_message,
            revision=revision or self.args.hub_revision, blocking=blocking,
        )

    def _push_from_checkpoint(self, checkpoint_folder):
        # `hub_strategy` pushes would upload the checkpoint as saved (optimizer state, RNG state and the arguments as
        # pickles); IngrainTrainer publishes through `push_to_hub` only.
        if not getattr(self, "_warned_checkpoint_push", False):
            logger.warning("IngrainTrainer does not push checkpoints (they hold pickles): call `push_to_hub()`.")
            self._warned_checkpoint_push = True


def _check_two_classes(args) -> None:
    """Refuses what a two-class key cannot do, before any work: its runner-up is always the other class, so the
    strength that steers `auto` reads nothing, and leaving the true class out leaves no class to learn from."""
    if args.ingrain_lambda_mode == "auto":
        raise ValueError(
            "`ingrain_lambda_mode='auto'` steers λ by the runner-up test, which a two-class key cannot run (the "
            "runner-up is always the other class): use `ingrain_lambda_mode='fixed'` and check the model with "
            "`verify(..., protocol='ingrain_scores')` after training."
        )
    if args.ingrain_exclude_label:
        raise ValueError(
            "`ingrain_exclude_label=True` leaves the true class out of the ingrain term, and with two classes one "
            "class is left, which carries nothing: set `ingrain_exclude_label=False`."
        )
