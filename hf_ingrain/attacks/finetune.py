"""The fine-tuning attacks of Adi et al. 2018: FTLL, FTAL, RTLL and RTAL."""

import copy
import logging
import tempfile
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from transformers import Trainer, TrainingArguments

from .arguments import attacker_data, data_parameters
from .registry import AttackSpec, BenchmarkColumns

logger = logging.getLogger(__name__)

MODES = ("FTLL", "FTAL", "RTLL", "RTAL")


def find_last_layer(
    model, name: str | None = None, layer_type: type = nn.Linear, what: str = "its classification head",
    argument: str = "last_layer", purpose: str = "treat as its last layer",
) -> tuple[str, nn.Module]:
    """The layer an attack works on, with its name: the module called `name`, or by default the model's last
    `layer_type` (the classification head: its last `nn.Linear`)."""
    if name is not None:
        try:
            return name, model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"The model has no module named {name!r}; pass the name of {what}.")
    layers = [(n, module) for n, module in model.named_modules() if isinstance(module, layer_type)]
    if not layers:
        raise ValueError(
            f"The model has no nn.{layer_type.__name__} layer to {purpose}; pass `{argument}=` by name."
        )
    return layers[-1]


class FineTuneAttack:
    r"""
    Fine-tuning attacks of Adi et al. 2018 (https://huggingface.co/papers/1802.04633), in their four variants.

    Threat model: the attacker holds the model's weights and a labelled data set of the same task (typically smaller
    than the owner's), and fine-tunes the model on it, hoping to erase the watermark while keeping accuracy:

    - `"FTLL"`: fine-tune the last layer only;
    - `"FTAL"`: fine-tune all layers;
    - `"RTLL"`: re-initialise the last layer, then train it only;
    - `"RTAL"`: re-initialise the last layer, then train all layers.

    The defaults are those of the paper's code: SGD with momentum 0.9, weight decay 5e-4, constant learning rate
    1e-3, batch size 100, 20 epochs. The target is not modified: [`~FineTuneAttack.run`] returns a fine-tuned copy.
    In the "last layer" modes the other layers' parameters are frozen, but buffers such as batch-norm running
    statistics still follow the attacker's data, as they do in the paper's code.

    Args:
        model (`PreTrainedModel` or `nn.Module`):
            The target classifier.
        mode (`str`, *optional*, defaults to `"FTAL"`):
            One of `"FTLL"`, `"FTAL"`, `"RTLL"`, `"RTAL"`.
        learning_rate (`float`, *optional*, defaults to 1e-3):
            Constant SGD learning rate.
        num_train_epochs (`float`, *optional*, defaults to 20):
            Passes over the attacker's data.
        batch_size (`int`, *optional*, defaults to 100):
            Examples per step.
        max_steps (`int`, *optional*, defaults to -1):
            If positive, the number of steps (overrides `num_train_epochs`).
        seed (`int`, *optional*, defaults to 0):
            Seed of the re-initialisation and of the training order.
        last_layer (`str`, *optional*):
            Name of the classification head (default: the model's last `nn.Linear`).
        training_args (`dict`, *optional*):
            Extra [`~transformers.TrainingArguments`] fields (e.g. `{"use_cpu": True}`); they override the above.

    Example:

    ```python
    >>> from hf_ingrain import verify
    >>> from hf_ingrain.attacks import FineTuneAttack
    >>> attacked = FineTuneAttack(model, mode="RTAL").run(splits["attacker"])
    >>> verify(attacked, key, splits["test"])
    ```
    """

    def __init__(
        self,
        model,
        *,
        mode: str = "FTAL",
        learning_rate: float = 1e-3,
        num_train_epochs: float = 20,
        batch_size: int = 100,
        max_steps: int = -1,
        seed: int = 0,
        last_layer: str | None = None,
        training_args: dict | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise ValueError(f"`model` must be an nn.Module, got {type(model).__name__}.")
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES} (Adi et al.'s variants), got {mode!r}.")
        if not learning_rate >= 0:
            raise ValueError(f"`learning_rate` must be >= 0, got {learning_rate}; the paper uses 1e-3.")
        if not batch_size >= 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        if max_steps <= 0 and not num_train_epochs > 0:
            raise ValueError(f"`num_train_epochs` must be > 0 (or set `max_steps`), got {num_train_epochs}.")
        self.model, self.mode, self.last_layer = model, mode, last_layer
        self.learning_rate, self.num_train_epochs, self.batch_size = learning_rate, num_train_epochs, batch_size
        self.max_steps, self.seed, self.training_args = max_steps, seed, dict(training_args or {})
        find_last_layer(model, last_layer)  # fail now, not after copying the model

    @property
    def parameters(self) -> dict:
        """The attack's parameters, as recorded in the attacked model's card."""
        return {
            "mode": self.mode, "learning_rate": self.learning_rate, "num_train_epochs": self.num_train_epochs,
            "batch_size": self.batch_size, "max_steps": self.max_steps, "seed": self.seed,
        }

    def run(self, dataset):
        """Fine-tunes a copy of the target on `dataset` (with `labels`) and returns it, in eval mode."""
        example = dataset[0] if len(dataset) else None
        if example is None or "labels" not in example:
            raise ValueError(
                "Fine-tuning needs the attacker's labelled data: the data set is empty or has no `labels` column. "
                "Without labels, use the distillation attack (DistillationTrainer)."
            )
        model = copy.deepcopy(self.model)
        _, head = find_last_layer(model, self.last_layer)
        if self.mode.startswith("RT"):
            with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's random state
                torch.manual_seed(self.seed)
                head.reset_parameters()
        requires_grad = {parameter: parameter.requires_grad for parameter in model.parameters()}
        head_parameters = set(head.parameters())
        for parameter in model.parameters():  # *AL trains everything, even a model that arrived frozen
            parameter.requires_grad_(self.mode.endswith("AL") or parameter in head_parameters)
        with tempfile.TemporaryDirectory() as scratch:
            args = dict(
                output_dir=scratch, learning_rate=self.learning_rate, num_train_epochs=self.num_train_epochs,
                max_steps=self.max_steps, per_device_train_batch_size=self.batch_size, optim="sgd",
                optim_args="momentum=0.9", weight_decay=5e-4, lr_scheduler_type="constant", seed=self.seed,
                report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
                use_cpu=not torch.cuda.is_available(),
            )
            logger.info("Fine-tuning attack %s on %d examples", self.mode, len(dataset))
            args = TrainingArguments(**{**args, **self.training_args})
            Trainer(model=model, args=args, train_dataset=dataset).train()
        for parameter, flag in requires_grad.items():
            parameter.requires_grad_(flag)
        return model.eval()


@dataclass
class FinetuneArguments:
    """The fine-tuning attack of Adi et al. (see [`~hf_ingrain.attacks.FineTuneAttack`])."""

    mode: Literal["FTLL", "FTAL", "RTLL", "RTAL"] = field(
        default="FTAL",
        metadata={"help": "FT/RT: keep/re-initialise the last layer; LL/AL: then train the last layer/all layers."},
    )


def _run_cli(model, target, training, finetune: FinetuneArguments):
    data = attacker_data(training)
    attack = FineTuneAttack(
        model, mode=finetune.mode, learning_rate=training.learning_rate, num_train_epochs=training.epochs,
        batch_size=training.batch_size or 100, max_steps=training.max_steps, seed=target.seed,
    )
    return attack.run(data), {**attack.parameters, **data_parameters(training, data)}


def _mode_column(match, teacher, context):  # finetune_<mode>, the paper's learning rate and batch size
    return FineTuneAttack(
        teacher, mode=match[1], num_train_epochs=context.config.finetune_epochs, seed=context.seed,
    ).run(context.attacker)


def _label_smoothing_column(match, teacher, context):  # retraining with label smoothing: FTAL on smoothed targets
    return FineTuneAttack(
        teacher, mode="FTAL", num_train_epochs=context.config.finetune_epochs, seed=context.seed,
        training_args={"label_smoothing_factor": float(match[1])},
    ).run(context.attacker)


ATTACK = AttackSpec(
    name="finetune",
    help="Fine-tune it (Adi et al. 2018).",
    arguments=(FinetuneArguments,),
    run_cli=_run_cli,
    trains=True,
    columns=(
        BenchmarkColumns(rf"finetune_({'|'.join(MODES)})", _mode_column, names=("finetune_FTAL",)),
        BenchmarkColumns(r"finetune_ls_(\d+(?:\.\d+)?)", _label_smoothing_column, names=("finetune_ls_0.1",)),
    ),
)
