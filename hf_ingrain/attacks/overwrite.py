"""[`OverwriteAttack`]: the thief ingrains a key of their own into the stolen model, to claim it as theirs."""

import copy
import os
import tempfile
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data import first_example
from .arguments import attacker_data, data_parameters
from .registry import AttackSpec, BenchmarkColumns


class OverwriteAttack:
    r"""
    Watermark overwriting: the thief fine-tunes the stolen model with [`~hf_ingrain.IngrainTrainer`] and a key of
    their own (drawn here, or given), on their own data, so that the model verifies under the thief's key, then claims
    it. The owner's watermark is not removed on purpose, only overlaid; the question is whether it survives next to the
    new one.

    Threat model: white-box access to the stolen model and labelled data of the task (not the owner's). What decides
    between two claims that both verify is not this attack's output but the record: the owner's key was committed (its
    commitment published with the model) before the thief's copy existed, and the owner's original model, published
    first, does not verify under the thief's key (`docs/guides/disputes.md`, "Two claims on one model").

    Args:
        model (`nn.Module`): the stolen model (left untouched: a copy is trained).
        key ([`WatermarkKey`], *optional*): the thief's key; by default one is drawn for the model from `key_seed`
            and its ingrainer trained on the thief's data (`ingrainer_steps`, `num_reference_keys`).
        key_seed (`int`, *optional*): seed of the thief's key (default: drawn from the operating system; never
            written into `parameters`, which go into the attacked model's card).
        num_carriers (`int`, *optional*, defaults to 100), ingrainer_steps (`int`, *optional*, defaults to 600),
        num_reference_keys (`int`, *optional*, defaults to 16): the drawn key's settings (as
            [`~hf_ingrain.WatermarkKey.generate`] and `train_ingrainer`).
        value_range (`tuple[float, float]`, *optional*, defaults to `(0.0, 1.0)`): the model's pixel range, for the
            drawn key's carriers.
        ingrain_lambda (`float`, *optional*, defaults to 0.5), ingrain_temperature (`float`, *optional*, defaults to
            4.0): the thief's ingrain term (as [`~hf_ingrain.IngrainConfig`]).
        num_train_epochs (`float`, *optional*, defaults to 3), max_steps (`int`, *optional*, defaults to -1),
        batch_size (`int`, *optional*, defaults to 64), learning_rate (`float`, *optional*, defaults to 1e-3):
            the fine-tuning.
        seed (`int`, *optional*, defaults to 0): seed of the fine-tuning.

    Example:

    ```python
    >>> from hf_ingrain import verify
    >>> from hf_ingrain.attacks import OverwriteAttack
    >>> attack = OverwriteAttack(model, ingrainer_steps=50, num_reference_keys=0, num_train_epochs=1)
    >>> claimed = attack.run(splits["attacker"])  # the thief's labelled data
    >>> verify(claimed, attack.key, splits["test"]).p_value, verify(claimed, key, splits["test"]).p_value
    ```
    """

    def __init__(
        self,
        model,
        *,
        key=None,
        key_seed: int | None = None,
        num_carriers: int = 100,
        ingrainer_steps: int = 600,
        num_reference_keys: int = 16,
        value_range: tuple[float, float] = (0.0, 1.0),
        ingrain_lambda: float = 0.5,
        ingrain_temperature: float = 4.0,
        num_train_epochs: float = 3,
        max_steps: int = -1,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        seed: int = 0,
    ):
        if not isinstance(model, nn.Module):
            raise ValueError(f"`model` must be a model, got {type(model).__name__}.")
        if getattr(getattr(model, "config", None), "num_labels", None) is None:
            raise ValueError("The model has no `config.num_labels`: the thief's key needs its number of labels.")
        if ingrain_lambda <= 0:
            raise ValueError(f"`ingrain_lambda` must be > 0 (the thief's ingrain term), got {ingrain_lambda}.")
        if not (num_train_epochs > 0 or max_steps > 0):
            raise ValueError("Train for `num_train_epochs` > 0 or `max_steps` > 0.")
        if key is None and (num_carriers < 1 or ingrainer_steps < 1 or num_reference_keys < 0):
            raise ValueError(
                "The thief's key needs `num_carriers` >= 1, `ingrainer_steps` >= 1 and `num_reference_keys` >= 0, got "
                f"{num_carriers}, {ingrainer_steps}, {num_reference_keys}."
            )
        self.model, self.key, self._key_seed = model, key, key_seed
        self.parameters = {
            "given_key": key is not None,
            "num_carriers": num_carriers, "ingrainer_steps": ingrainer_steps, "num_reference_keys": num_reference_keys,
            "value_range": list(value_range), "ingrain_lambda": ingrain_lambda,
            "ingrain_temperature": ingrain_temperature, "num_train_epochs": num_train_epochs, "max_steps": max_steps,
            "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
        }

    def _draw_key(self, dataset):
        from ..keys import WatermarkKey

        p = self.parameters
        example = first_example(dataset)
        if example is None or "pixel_values" not in example:
            raise ValueError("Drawing the thief's key needs image data with `pixel_values`; or pass `key=`.")
        key = WatermarkKey.generate(
            self.model.config.num_labels, tuple(torch.as_tensor(example["pixel_values"]).shape), p["num_carriers"],
            seed=self._key_seed, value_range=tuple(p["value_range"]),
        )
        key.train_ingrainer(
            benign_dataset=dataset, num_steps=p["ingrainer_steps"], num_reference_keys=p["num_reference_keys"],
            show_progress=False,
        )
        return key

    def run(self, dataset) -> nn.Module:
        """Draws the thief's key if none was given (kept as `self.key`), ingrains it into a copy of the model on
        `dataset` (labelled), and returns that copy in eval mode."""
        from ..trainer import IngrainConfig, IngrainTrainer

        example = first_example(dataset)
        if example is None or "labels" not in example:
            raise ValueError("The thief's data needs a `labels` column: the ingrain term rides on the task loss.")
        if self.key is None:
            self.key = self._draw_key(dataset)
        p = self.parameters
        model = copy.deepcopy(self.model).train()
        with tempfile.TemporaryDirectory() as scratch:
            args = IngrainConfig(
                output_dir=scratch, ingrain_lambda=p["ingrain_lambda"], ingrain_temperature=p["ingrain_temperature"],
                num_train_epochs=p["num_train_epochs"], max_steps=p["max_steps"],
                per_device_train_batch_size=p["batch_size"], learning_rate=p["learning_rate"], seed=p["seed"],
                report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
                use_cpu=not torch.cuda.is_available(),
            )
            IngrainTrainer(model=model, args=args, train_dataset=dataset, ingrainer=self.key).train()
        self.parameters["thief_key_commitment"] = self.key.commitment()
        return model.eval()


@dataclass
class OverwriteArguments:
    r"""
    Overwriting (see [`~hf_ingrain.attacks.OverwriteAttack`]): ingrain a key of the thief's own into the model.

    Args:
        key_output (`str`): a new folder for the thief's key (never inside the model's folder).
        key_seed (`int`, *optional*): seed of the thief's key (default: drawn from the operating system).
        num_carriers (`int`), ingrainer_steps (`int`), num_reference_keys (`int`): the key's settings.
        ingrain_lambda (`float`), ingrain_temperature (`float`): the thief's ingrain term.
        value_range (`list[float]`, *optional*, defaults to `[0, 1]`): the model's pixel range, for the carriers.
    """

    key_output: str = field(metadata={"help": "New folder for the thief's key (kept apart from the model)."})
    key_seed: int | None = field(default=None, metadata={"help": "Seed of the thief's key (experiments only)."})
    num_carriers: int = field(default=100, metadata={"help": "Carriers of the thief's key."})
    ingrainer_steps: int = field(default=600, metadata={"help": "Training steps of the thief's ingrainer."})
    num_reference_keys: int = field(default=16, metadata={"help": "Reference ingrainers of the thief's key."})
    ingrain_lambda: float = field(default=0.5, metadata={"help": "Weight of the thief's ingrain term."})
    ingrain_temperature: float = field(default=4.0, metadata={"help": "Temperature of the thief's ingrain term."})
    value_range: list[float] = field(
        default_factory=lambda: [0.0, 1.0], metadata={"help": "The model's pixel range (low high) after preprocessing."}
    )


def _check_key_output(target, training, overwrite: OverwriteArguments):
    """The thief's key goes to a new folder outside the model's (checked before any long work)."""
    from ..files import check_new_folder

    key_output = overwrite.key_output
    check_new_folder(key_output, what="the thief's key")
    inside = os.path.commonpath([os.path.abspath(key_output), os.path.abspath(target.output)])
    if inside == os.path.abspath(target.output):
        raise ValueError(
            f"`--key_output` {key_output!r} is inside the model's folder {target.output!r}: a key never travels "
            "with its model. Choose a folder outside it."
        )


def _run_cli(model, target, training, overwrite: OverwriteArguments):
    data = attacker_data(training)
    attack = OverwriteAttack(
        model, key_seed=overwrite.key_seed, num_carriers=overwrite.num_carriers,
        ingrainer_steps=overwrite.ingrainer_steps, num_reference_keys=overwrite.num_reference_keys,
        value_range=tuple(overwrite.value_range), ingrain_lambda=overwrite.ingrain_lambda,
        ingrain_temperature=overwrite.ingrain_temperature, num_train_epochs=training.epochs,
        max_steps=training.max_steps, batch_size=training.batch_size or 64, learning_rate=training.learning_rate,
        seed=target.seed,
    )
    attacked = attack.run(data)
    attack.key.save(overwrite.key_output)
    saved = f"overwrite: saved the thief's key to {overwrite.key_output} (commitment {attack.key.commitment()})"
    return attacked, {**attack.parameters, **data_parameters(training, data)}, [saved]


def _overwrite_column(match, teacher, context):
    """The thief's key is drawn once per run, like the owner's, with the owner's key settings; the benchmark reads it
    from `context.state["thief_key"]` for the two claims on one model."""
    config = context.config
    attack = OverwriteAttack(
        teacher, key=context.state.get("thief_key"), key_seed=config.seed + 1000, num_carriers=config.num_carriers,
        ingrainer_steps=config.ingrainer_steps, num_reference_keys=config.num_reference_keys,
        ingrain_temperature=config.ingrain_temperature, num_train_epochs=config.finetune_epochs,
        batch_size=config.batch_size, learning_rate=config.learning_rate, seed=context.seed,
    )
    attacked = attack.run(context.attacker)
    context.state["thief_key"] = attack.key
    return attacked


ATTACK = AttackSpec(
    name="overwrite",
    help="Ingrain a key of the thief's own into the model (saved apart, in --key_output).",
    arguments=(OverwriteArguments,),
    run_cli=_run_cli,
    trains=True,
    check_cli=_check_key_output,
    columns=(BenchmarkColumns("overwrite", _overwrite_column, names=("overwrite",)),),
)
