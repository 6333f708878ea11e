"""What the `Trainer` subclasses of this package share: extra metrics, recorded per step and averaged at each log."""

from collections import defaultdict

import torch


class LoggedMetricsMixin:
    """Records named per-step values (`_record_metric`) and adds their mean over all processes to each log.

    Values stay detached tensors until a log is due, so recording costs no device sync and no collective per step;
    the single gather happens in `log()`, which the `Trainer` calls on every process.
    """

    def _init_metrics(self) -> None:
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    def _record_metric(self, model, name: str, value: torch.Tensor) -> None:
        mode = "train" if model.training else "eval"
        self._metrics[mode][name].append(value.detach().float().mean().reshape(1))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        metrics = {
            f"{prefix}{name}": self.accelerator.gather(torch.cat(values)).mean().item()
            for name, values in self._metrics[mode].items()
            if values
        }
        self._metrics[mode].clear()
        super().log({**logs, **metrics}, start_time)
