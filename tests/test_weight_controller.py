"""A strength that tunes itself (issue 33, item 1): `ingrain_lambda_mode="auto"` moves λ at each measurement of the
watermark, the loss uses it, and a resumed run continues with the weight its checkpoint was saved with."""

import shutil

import pytest
import torch
from conftest import tiny_cnn, training_args
from trained_models import single_thread  # noqa: F401  (autouse: this module trains on one thread)

from hf_ingrain import IngrainConfig, IngrainTrainer
from hf_ingrain.trainer import IngrainWeightController
from hf_ingrain.trainer.strength import WatermarkStrength


def _auto(key, splits, tmp_path, output="out", **kwargs):
    values = {"max_steps": 8, "ingrain_lambda_mode": "auto", "ingrain_lambda": 0.1, "ingrain_strength_steps": 2,
              "ingrain_strength_examples": 200, "output_dir": str(tmp_path / output), **kwargs}
    args = IngrainConfig(**training_args(tmp_path, **values))
    return IngrainTrainer(model=tiny_cnn(), args=args, train_dataset=splits["owner"], eval_dataset=splits["test"],
                          ingrainer=key)


def _fixed_p(monkeypatch, p_value):
    def measured(*args, step=None, **kwargs):
        return WatermarkStrength(
            agreement=0.4, null_rate=0.2, reference_agreement=0.15, reference_sd=0.02, num_references=3,
            num_queries=200, p_value=p_value, predicted_p_value=p_value, budget=1000, alpha=1e-6, source="eval_dataset",
            step=step,
        )

    monkeypatch.setattr("hf_ingrain.trainer.ingrain_trainer.measure_strength", measured)


# ------------------------------------------------------------------------------------------------ the rule
def test_the_weight_rises_below_the_target_falls_far_above_it_and_holds_in_between():
    controller = IngrainWeightController(weight=0.5, target_log10_p=-8, band=4)
    assert controller.update(-3) == pytest.approx(0.75)  # too weak: x1.5
    assert controller.update(-9) == pytest.approx(0.75)  # verifies with its margin: hold
    assert controller.update(-12) == pytest.approx(0.75)  # at the band's edge: hold
    assert controller.update(-13) == pytest.approx(0.6)  # far stronger than needed: x0.8
    assert controller.updates == 4
    for _ in range(20):
        controller.update(0)
    assert controller.weight == 4.0  # bounded
    restored = IngrainWeightController.from_state(controller.state())
    assert (restored.weight, restored.updates, restored.initial_weight) == (4.0, 24, 0.5)


def test_bad_settings_are_refused_before_any_work(key_with_references, embedded_splits, tmp_path):
    with pytest.raises(ValueError, match="lie in"):
        IngrainWeightController(weight=0.0)
    with pytest.raises(ValueError, match="up > 1"):
        IngrainWeightController(up=0.9)
    with pytest.raises(ValueError, match="ingrain_lambda_mode"):
        IngrainConfig(**training_args(tmp_path, ingrain_lambda_mode="adaptive"))
    with pytest.raises(ValueError, match="ingrain_strength_examples"):
        IngrainConfig(**training_args(tmp_path, ingrain_lambda_mode="auto", ingrain_strength_examples=0))
    args = IngrainConfig(**training_args(tmp_path, ingrain_lambda_mode="auto"))
    with pytest.raises(ValueError, match="needs the key"):
        IngrainTrainer(model=tiny_cnn(), args=args, train_dataset=embedded_splits["owner"],
                       ingrainer=key_with_references.ingrainer)


# ------------------------------------------------------------------------------------------------ in training
def test_a_weak_watermark_raises_the_weight_and_the_loss_uses_it(key_with_references, embedded_splits, tmp_path):
    trainer = _auto(key_with_references, embedded_splits, tmp_path)
    trainer.train()
    logs = {entry["step"]: entry for entry in trainer.state.log_history if "loss" in entry}
    # 8 steps of a tiny CNN carry no watermark that a 1,000-query test could verify at 1e-8: every measurement raises λ
    lambdas = {step: logs[step]["ingrain/lambda"] for step in (2, 4, 6, 8)}
    assert lambdas == pytest.approx({2: 0.15, 4: 0.225, 6: 0.3375, 8: 0.50625})
    assert all(logs[step]["ingrain/log10_p_value"] > -8 for step in lambdas)
    # each step's loss is its task loss plus the λ in force at that step (raised after steps 2, 4 and 6)
    in_force = {1: 0.1, 2: 0.1, 3: 0.15, 4: 0.15, 5: 0.225, 6: 0.225, 7: 0.3375, 8: 0.3375}
    for step, weight in in_force.items():
        entry = logs[step]
        assert entry["loss"] == pytest.approx(entry["task/loss"] + weight * entry["ingrain/loss"], rel=1e-4), step
    assert trainer.ingrain_weight() == pytest.approx(0.50625)
    trainer.create_model_card()  # the card records the weight the model ended with
    assert '"ingrain_lambda": 0.50625' in (tmp_path / "out" / "watermark.json").read_text()


def test_a_watermark_far_stronger_than_needed_lowers_the_weight(key_with_references, embedded_splits, tmp_path,
                                                                 monkeypatch):
    _fixed_p(monkeypatch, 1e-20)
    trainer = _auto(key_with_references, embedded_splits, tmp_path, ingrain_lambda=0.5)
    trainer.train()
    assert trainer.weight_controller.updates == 4
    assert trainer.ingrain_weight() == pytest.approx(0.5 * 0.8**4)


def test_the_weight_moves_once_per_optimizer_step_under_gradient_accumulation(key_with_references, embedded_splits,
                                                                              tmp_path, monkeypatch):
    _fixed_p(monkeypatch, 1e-3)
    trainer = _auto(key_with_references, embedded_splits, tmp_path, max_steps=4, gradient_accumulation_steps=3,
                    per_device_train_batch_size=8)
    trainer.train()
    assert trainer.weight_controller.updates == 2  # measurements after optimizer steps 2 and 4, not after micro-batches


def test_without_a_measurement_interval_the_controlled_mode_measures_twenty_times(key_with_references,
                                                                                  embedded_splits, tmp_path,
                                                                                  monkeypatch):
    _fixed_p(monkeypatch, 1e-3)
    trainer = _auto(key_with_references, embedded_splits, tmp_path, max_steps=40, ingrain_strength_steps=0)
    trainer.train()
    assert trainer.weight_controller.updates == 20


@pytest.mark.parametrize("restore_callbacks", [False, True])  # True: transformers makes a new controller from the state
def test_a_resumed_run_continues_with_the_saved_weight_and_ends_as_the_run_that_went_through(
    key_with_references, embedded_splits, tmp_path, restore_callbacks
):
    straight = _auto(key_with_references, embedded_splits, tmp_path, output="straight", max_steps=6,
                     save_strategy="steps", save_steps=3)
    straight.train()
    # an interruption after the step-3 checkpoint: the folder as the crash leaves it
    shutil.copytree(tmp_path / "straight" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")
    resumed = _auto(key_with_references, embedded_splits, tmp_path, output="resumed", max_steps=6,
                    save_strategy="steps", save_steps=3, restore_callback_states_from_checkpoint=restore_callbacks)
    assert resumed.ingrain_weight() == 0.1  # before resuming, the starting weight
    resumed.train(resume_from_checkpoint=True)
    assert resumed.weight_controller.updates == straight.weight_controller.updates == 3
    assert resumed.ingrain_weight() == straight.ingrain_weight() > 0.1
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name  # same weights, bit for bit
