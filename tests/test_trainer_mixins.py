from types import SimpleNamespace

import pytest
import torch

from hf_ingrain.trainer.mixins import LoggedMetricsMixin


class _Logger:
    def log(self, logs, start_time=None):
        self.logged = logs


class _Recorder(LoggedMetricsMixin, _Logger):
    """The mixin over a stand-in Trainer: one process, so the reduction across processes is the identity."""

    def __init__(self):
        self._init_metrics()
        self.model = SimpleNamespace(training=True)
        self.accelerator = SimpleNamespace(reduce=lambda tensor, reduction: tensor)


def test_logged_value_is_the_mean_of_the_values_recorded_since_the_last_log():
    recorder = _Recorder()
    model = recorder.model
    for value in (torch.tensor(1.0), torch.tensor(2.0), torch.tensor([3.0, 5.0])):  # a vector counts as its mean
        recorder._record_metric(model, "task/loss", value)
    recorder.log({"loss": 0.5})
    assert recorder.logged == {"loss": 0.5, "task/loss": pytest.approx(7.0 / 3.0)}
    recorder._record_metric(model, "task/loss", torch.tensor(10.0))
    recorder.log({})
    assert recorder.logged == {"task/loss": pytest.approx(10.0)}  # the first three are gone


def test_memory_does_not_grow_between_logs_and_modes_stay_apart():
    recorder = _Recorder()
    for step in range(10_000):  # logging_strategy="no" logs once, at the very end
        recorder._record_metric(recorder.model, "ingrain/loss", torch.tensor(float(step % 2)))
    assert recorder._metrics["train"]["ingrain/loss"].shape == (2,)
    recorder._record_metric(SimpleNamespace(training=False), "ingrain/loss", torch.tensor(4.0))
    recorder.log({})
    assert recorder.logged == {"ingrain/loss": pytest.approx(0.5)}
    recorder.model.training = False
    recorder.log({})
    assert recorder.logged == {"eval_ingrain/loss": pytest.approx(4.0)}


def test_the_task_loss_per_batch_needs_no_sync_and_is_unchanged():
    # IngrainTrainer passes the batch's labelled items as a tensor (0.2 read it with int(), a device sync every step):
    # the logged task loss is the same number as with the int, bit for bit, and a batch with none keeps its loss.
    from hf_ingrain.trainer.mixins import AuxiliaryLossMixin

    class _Trainer(AuxiliaryLossMixin):
        model_accepts_loss_kwargs, compute_loss_func = True, None
        args = SimpleNamespace(average_tokens_across_devices=True)
        accelerator = SimpleNamespace(num_processes=2)

    trainer = _Trainer()
    labels = torch.tensor([3, -100, 1, 4, -100, 0, 2])
    task_loss = torch.tensor(0.8123457)
    for num_items_in_batch in (torch.tensor(23), 23):
        with_int = task_loss * num_items_in_batch / (2 * int((labels != -100).sum()))
        with_tensor = trainer._task_loss_per_batch(task_loss, num_items_in_batch, (labels != -100).sum())
        assert torch.equal(with_tensor, with_int)
    assert torch.equal(trainer._task_loss_per_batch(task_loss, 23, (labels[[1, 4]] != -100).sum()), task_loss)
    assert torch.equal(trainer._task_loss_per_batch(task_loss, None, (labels != -100).sum()), task_loss)
