"""What the `Trainer` subclasses and configs of this package share: extra metrics, extra loss terms normalised exactly
like the task loss, and building a config from existing training arguments."""

import dataclasses

import torch


class LoggedMetricsMixin:
    """Records named per-step values (`_record_metric`) and adds their mean over all processes to each log.

    Each name keeps a running (sum, count) tensor on the device, so recording costs no device sync and no collective
    per step and its memory does not grow between logs (however rare: `logging_strategy="no"` logs once, at the end);
    the single reduction across processes happens in `log()`, which the `Trainer` calls on every process. The logged
    value is the mean of every recorded value since the last log, over all processes, even when they recorded
    different numbers of values.
    """

    def _init_metrics(self) -> None:
        self._metrics = {"train": {}, "eval": {}}

    def _record_metric(self, model, name: str, value: torch.Tensor) -> None:
        mode = "train" if model.training else "eval"
        value = value.detach().float().mean()
        step = torch.stack([value, torch.ones_like(value)])
        totals = self._metrics[mode]
        totals[name] = totals[name] + step if name in totals else step

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        metrics = {}
        for name, total in self._metrics[mode].items():
            total = self.accelerator.reduce(total, reduction="sum")
            metrics[f"{prefix}{name}"] = (total[0] / total[1]).item()
        self._metrics[mode].clear()
        # In place, as `Trainer.log` adds `epoch`: `evaluate()` returns this dict, with both.
        logs.update(metrics)
        super().log(logs, start_time)


class AuxiliaryLossMixin:
    r"""
    Extra loss terms (ingrain, distillation, a weight signature) reduced exactly as the `Trainer` reduces the task
    loss of the same batch, so that their weight against it means the same with or without gradient accumulation,
    several processes, a model that takes `num_items_in_batch`, or a `compute_loss_func`.

    The `Trainer` (transformers >= 4.46) normalises the task loss by `num_items_in_batch` (the labelled items of the
    whole accumulated batch, over all processes) when the model accepts loss kwargs or a `compute_loss_func` is set,
    multiplies it by the number of processes when `average_tokens_across_devices` (DDP then averages the gradients),
    and divides the loss by the accumulation steps only when it was not normalised that way
    (`loss_is_scaled_for_ga`). The methods here apply the same rules to a term the trainer adds.
    """

    def _normalized_by_items(self, num_items_in_batch) -> bool:
        """Whether the task loss of this batch is a sum divided by `num_items_in_batch`."""
        return num_items_in_batch is not None and (
            self.model_accepts_loss_kwargs or getattr(self, "compute_loss_func", None) is not None
        )

    def _loss_is_scaled_for_ga(self, num_items_in_batch) -> bool:
        """Whether `training_step` will use the loss as is (True) or divide it by the accumulation steps."""
        forced = getattr(self, "loss_is_scaled_for_ga", None)
        if forced is not None:
            return forced
        return (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or getattr(
            self, "compute_loss_func", None
        ) is not None

    def _process_factor(self) -> int:
        return self.accelerator.num_processes if self.args.average_tokens_across_devices else 1

    def _reduce_per_example(self, per_example: torch.Tensor, num_items_in_batch, training: bool) -> torch.Tensor:
        """A per-example term, reduced as the task loss: `sum / num_items_in_batch` (times the processes) when the
        task loss is, else the batch mean (divided by the accumulation steps when the Trainer will not divide)."""
        if self._normalized_by_items(num_items_in_batch):
            return per_example.sum() / num_items_in_batch * self._process_factor()
        loss = per_example.mean()
        if training and self._loss_is_scaled_for_ga(num_items_in_batch):
            loss = loss / self.current_gradient_accumulation_steps
        return loss

    def _reduce_per_step(self, value: torch.Tensor, num_items_in_batch, training: bool) -> torch.Tensor:
        """A term counted once per optimizer step (a weight regulariser): divided by the accumulation steps when the
        Trainer will not divide the loss itself."""
        if training and self._loss_is_scaled_for_ga(num_items_in_batch):
            return value / self.current_gradient_accumulation_steps
        return value

    def _task_loss_per_batch(self, task_loss: torch.Tensor, num_items_in_batch, local_items) -> torch.Tensor:
        """The task loss as the mean over this batch's labelled items (for logging), whatever its normalisation.
        `local_items` (the batch's labelled items, a number or a tensor) is used on the device: no sync."""
        if not self._normalized_by_items(num_items_in_batch) or local_items is None:
            return task_loss
        local_items = torch.as_tensor(local_items, device=task_loss.device)
        per_item = task_loss * num_items_in_batch / (self._process_factor() * local_items.clamp(min=1))
        return torch.where(local_items > 0, per_item, task_loss)  # a batch without a labelled item keeps its loss


def check_config(args, config_class: type, carries: str) -> None:
    """Refuses training arguments that are not a `config_class` (which carries `carries`), naming the fix."""
    name = config_class.__name__
    if args is None:
        raise ValueError(f"Pass `args={name}(output_dir=...)`.")
    if not isinstance(args, config_class):
        raise ValueError(
            f"`args` must be a {name} (it carries {carries}), got {type(args).__name__}. Build it with "
            f"`{name}.from_training_arguments(your_training_args)`."
        )


class ExtendsTrainingArguments:
    """For configs that subclass `TrainingArguments`: build one from training arguments a script already has."""

    @classmethod
    def from_training_arguments(cls, training_args, **fields):
        r"""
        A config with every field of `training_args` (a `TrainingArguments` or a subclass), plus `fields`.

        Unlike `cls(**training_args.to_dict())`, this keeps the Hub token (`to_dict` masks it) and every other value
        as the script set it.

        Example:

        ```python
        >>> from transformers import TrainingArguments
        >>> from hf_ingrain import IngrainConfig
        >>> args = TrainingArguments(output_dir="out", learning_rate=3e-4)
        >>> config = IngrainConfig.from_training_arguments(args, ingrain_lambda=0.5)
        ```
        """
        own = {f.name for f in dataclasses.fields(cls) if f.init}
        values = {f.name: getattr(training_args, f.name) for f in dataclasses.fields(training_args) if f.init}
        unknown = sorted(set(fields) - own)
        if unknown:
            raise ValueError(f"{cls.__name__} has no fields {unknown}.")
        return cls(**{**{k: v for k, v in values.items() if k in own}, **fields})
