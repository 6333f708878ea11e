"""What the `Trainer` subclasses of this package share: extra metrics, recorded per step and averaged at each log."""

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
        super().log({**logs, **metrics}, start_time)
