"""The watermark's strength while training (issue 33, item 2): measured with the key's own test on held-out examples,
logged through the Trainer, recorded in the model card, a warning when it has not taken, and the callback that trains
until it takes."""

import json
import logging
import math

import pytest
import torch
from conftest import NUM_LABELS, tiny_bert, tiny_cnn, training_args
from datasets import Dataset
from scipy.stats import t as student_t
from trained_models import single_thread  # noqa: F401  (autouse: this module trains on one thread)
from transformers import TrainerControl, TrainerState

from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey, verify
from hf_ingrain.trainer import strength as strength_module
from hf_ingrain.trainer.strength import WatermarkStrength, WatermarkTakesCallback, predicted_p_value
from hf_ingrain.verification.statistics import binomial_p_value, key_draw_p_value

TRAINER_LOGGER = "hf_ingrain.trainer.strength"



def _trainer(key, splits, tmp_path, callbacks=None, **kwargs):
    args = IngrainConfig(**training_args(tmp_path, **{"max_steps": 7, **kwargs}))
    return IngrainTrainer(model=tiny_cnn(), args=args, train_dataset=splits["owner"], eval_dataset=splits["test"],
                          ingrainer=key, callbacks=callbacks)


def _strength(**fields):
    values = dict(agreement=0.4, null_rate=0.2, reference_agreement=0.15, reference_sd=0.02, num_references=16,
                  num_queries=512, p_value=1e-5, predicted_p_value=1e-9, budget=1000, alpha=1e-6,
                  source="eval_dataset", step=7)
    return WatermarkStrength(**{**values, **fields})


# ------------------------------------------------------------------------------------------------ the prediction
def test_the_prediction_at_the_measured_number_of_queries_is_verifys_own_p_value(key_with_references, embedded_splits,
                                                                                  tmp_path):
    trainer = _trainer(key_with_references, embedded_splits, tmp_path, ingrain_strength_examples=300)
    trainer.train()
    strength = trainer.measure_watermark_strength()
    examples = trainer._padded(embedded_splits["test"])
    result = verify(trainer.model, key_with_references, examples)
    assert strength.source == "eval_dataset" and strength.num_queries == result.num_queries == 300
    assert strength.num_references == 3 and strength.reference_agreement is not None
    assert (strength.agreement, strength.null_rate, strength.p_value) == (result.agreement, result.null_rate,
                                                                         result.p_value)
    # At a budget equal to the queries measured, the prediction is the test itself: the same binomial count and the
    # same key-draw spread (its sampling part is taken out and put back at the same number of queries).
    at_measured = predicted_p_value(result.agreement, result.null_rate, result.details["key_draw"],
                                    result.num_queries, budget=result.num_queries)
    assert at_measured == pytest.approx(result.p_value, rel=1e-9, abs=1e-300)


def test_the_prediction_without_references_is_the_binomial_test_at_the_budget():
    assert predicted_p_value(0.3, 0.2, None, 500, 1000) == binomial_p_value(300, 1000, 0.2)
    assert predicted_p_value(0.3, 0.2, {"num_references": 1}, 500, 1000) == binomial_p_value(300, 1000, 0.2)


def test_more_queries_sharpen_the_prediction_down_to_the_spread_between_keys():
    references = [0.10, 0.20, 0.15, 0.12, 0.18, 0.14]  # spread 0.037, above one agreement's noise at 200 queries
    _, numbers = key_draw_p_value(0.25, references, 200)
    small, large, huge = (predicted_p_value(0.25, 0.2, numbers, 200, budget) for budget in (200, 10_000, 10**12))
    assert huge < large < small  # the references' sampling noise shrinks with the budget...
    # ...down to the key-draw test on the spread between keys alone, which no number of queries removes
    between = math.sqrt(numbers["sd"] ** 2 - numbers["mean"] * (1 - numbers["mean"]) / 200)
    statistic = (0.25 - numbers["mean"]) / (between * math.sqrt(1 + 1 / len(references)))
    assert huge == pytest.approx(student_t.sf(statistic, len(references) - 1), rel=1e-4)


# ------------------------------------------------------------------------------------------------ during training
def test_training_logs_the_strength_every_n_steps_and_at_the_last_step(key_with_references, embedded_splits,
                                                                       tmp_path):
    trainer = _trainer(key_with_references, embedded_splits, tmp_path, ingrain_strength_steps=3,
                       ingrain_strength_examples=200)
    trainer.train()
    measured = {entry["step"]: entry for entry in trainer.state.log_history if "ingrain/agreement" in entry}
    assert sorted(measured) == [3, 6, 7]
    assert all("loss" in entry for entry in measured.values())  # merged into that step's training log
    last = trainer.watermark_strength
    assert last.step == 7 and last.num_queries == 200 and last.source == "eval_dataset"
    for name, value in last.to_logs().items():
        assert measured[7][name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
    again = trainer.measure_watermark_strength()  # the same examples, the same trained model: the same numbers
    assert (again.agreement, again.predicted_p_value) == (last.agreement, last.predicted_p_value)
    assert trainer.model.training  # measuring did not leave the model in eval mode


def test_a_run_whose_watermark_does_not_take_ends_with_the_warning_and_the_card_says_so(
    key_with_references, embedded_splits, tmp_path, caplog
):
    # lambda = 0: no watermark at all, so whatever the data, the key's test cannot pass
    trainer = _trainer(key_with_references, embedded_splits, tmp_path, ingrain_lambda=0.0)
    with caplog.at_level(logging.WARNING, logger=TRAINER_LOGGER):
        trainer.train()
    warnings = [r.getMessage() for r in caplog.records if r.name == TRAINER_LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "The watermark has not taken" in warnings[0]
    for advice in ("num_train_epochs", "WatermarkTakesCallback", "ingrain_lambda", "hf_ingrain.verify"):
        assert advice in warnings[0]
    assert not trainer.watermark_strength.takes
    # the scores protocol was asked too, on the same examples, and finds nothing either (λ = 0)
    scores_p_value = trainer.watermark_strength.scores_p_value
    assert scores_p_value > 1e-3 and "Nor does the scores protocol" in warnings[0]
    trainer.create_model_card()
    block = json.loads((tmp_path / "out" / "watermark.json").read_text())["training_strength"]
    assert block["takes"] is False and block["step"] == 7 and block["source"] == "eval_dataset"
    assert block["scores_p_value"] == pytest.approx(scores_p_value)
    assert block["predicted_p_value"] == pytest.approx(trainer.watermark_strength.predicted_p_value)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Watermark strength at the end of training" in card and "(not taken)" in card


def test_a_watermark_that_takes_gets_no_warning(key_with_references, embedded_splits, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("hf_ingrain.trainer.ingrain_trainer.measure_strength",
                        lambda *args, step=None, **kwargs: _strength(step=step))
    trainer = _trainer(key_with_references, embedded_splits, tmp_path)
    with caplog.at_level(logging.INFO, logger=TRAINER_LOGGER):
        trainer.train()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == TRAINER_LOGGER]
    assert not [m for level, m in messages if level >= logging.WARNING]
    assert any("The watermark has taken" in m for _, m in messages)


def test_a_watermark_the_scores_protocol_finds_is_named_in_the_warning(key_with_references, embedded_splits, tmp_path,
                                                                        caplog, monkeypatch):
    # the text case (docs/strength/README.md): the runner-up test is predicted to fail, every class's score shows it
    def measured(*args, step=None, scores=False, **kwargs):
        return _strength(step=step, predicted_p_value=0.2, scores_p_value=1e-9 if scores else None)

    monkeypatch.setattr("hf_ingrain.trainer.ingrain_trainer.measure_strength", measured)
    trainer = _trainer(key_with_references, embedded_splits, tmp_path)
    with caplog.at_level(logging.WARNING, logger=TRAINER_LOGGER):
        trainer.train()
    (warning,) = [r.getMessage() for r in caplog.records if r.name == TRAINER_LOGGER]
    assert "The scores protocol finds it" in warning and "protocol='ingrain_scores'" in warning
    assert trainer.watermark_strength.scores_p_value == 1e-9
    trainer.create_model_card()
    assert "The scores protocol (`ingrain_scores`, every class's score) gave p = 1e-09" in (
        tmp_path / "out" / "README.md").read_text()


def test_training_examples_are_used_without_held_out_data_and_the_warning_says_they_overstate(
    key_with_references, embedded_splits, tmp_path, caplog
):
    args = IngrainConfig(**training_args(tmp_path, ingrain_lambda=0.0, ingrain_strength_examples=100))
    trainer = IngrainTrainer(model=tiny_cnn(), args=args, train_dataset=embedded_splits["owner"],
                             ingrainer=key_with_references)
    with caplog.at_level(logging.WARNING, logger=TRAINER_LOGGER):
        trainer.train()
    assert trainer.watermark_strength.source == "train_dataset"
    assert any("overstate" in r.getMessage() for r in caplog.records if r.name == TRAINER_LOGGER)


def test_measuring_can_be_turned_off(key_with_references, embedded_splits, tmp_path, caplog):
    trainer = _trainer(key_with_references, embedded_splits, tmp_path, ingrain_strength_examples=0,
                       ingrain_lambda=0.0)
    with caplog.at_level(logging.WARNING, logger=TRAINER_LOGGER):
        trainer.train()
    assert trainer.watermark_strength is None
    assert not any("ingrain/agreement" in entry for entry in trainer.state.log_history)
    assert not [r for r in caplog.records if r.name == TRAINER_LOGGER]
    trainer.create_model_card()
    assert json.loads((tmp_path / "out" / "watermark.json").read_text())["training_strength"] is None


def test_text_examples_are_padded_by_the_trainers_collator(tmp_path):
    """The official text script pads per batch (DataCollatorWithPadding): the examples measured come out of the
    trainer's collator in one call, so sentences of every length are measured together."""
    key = WatermarkKey.generate(num_labels=NUM_LABELS, vocab_size=100, num_carriers=10, seed=0, sequence_length=12)
    key.train_ingrainer(num_steps=30, show_progress=False, num_reference_keys=2)
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 12, (40,), generator=generator).tolist()
    data = Dataset.from_dict({
        "input_ids": [torch.randint(1, 100, (n,), generator=generator).tolist() for n in lengths],
        "labels": torch.randint(0, NUM_LABELS, (40,), generator=generator).tolist(),
    })

    def pad(rows):
        width = max(len(row["input_ids"]) for row in rows)
        ids = torch.tensor([row["input_ids"] + [0] * (width - len(row["input_ids"])) for row in rows])
        mask = torch.tensor([[1] * len(row["input_ids"]) + [0] * (width - len(row["input_ids"])) for row in rows])
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([row["labels"] for row in rows])}

    args = IngrainConfig(**training_args(tmp_path, max_steps=2, per_device_train_batch_size=8))
    trainer = IngrainTrainer(model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data, data_collator=pad,
                             ingrainer=key)
    trainer.train()
    assert trainer.watermark_strength is not None and trainer.watermark_strength.num_queries >= 38  # near-dups aside


# ------------------------------------------------------------------------------------------------ the callback
def _log(callback, args, epoch, log10_p, step=10):
    state, control = TrainerState(epoch=epoch, global_step=step), TrainerControl()
    callback.on_log(args, state, control, logs={"loss": 1.0, "ingrain/log10_p_value": log10_p})
    return control.should_training_stop


def test_the_callback_stops_once_the_watermark_takes_with_its_margin_after_the_minimum(tmp_path):
    args = IngrainConfig(**training_args(tmp_path, ingrain_strength_steps=5))
    callback = WatermarkTakesCallback(min_epochs=2)
    assert not _log(callback, args, epoch=1.0, log10_p=-12)  # before the task's own length
    assert not _log(callback, args, epoch=2.5, log10_p=-7.5)  # verifies, but within the margin (alpha 1e-6, 2 decades)
    assert _log(callback, args, epoch=3.0, log10_p=-8.0, step=30)
    assert callback.stopped_at == 30
    assert not _log(WatermarkTakesCallback(), args, epoch=5, log10_p=None)  # a log without a measurement


def test_the_callback_refuses_bad_settings():
    with pytest.raises(ValueError, match="alpha"):
        WatermarkTakesCallback(alpha=1.5)
    with pytest.raises(ValueError, match="min_epochs"):
        WatermarkTakesCallback(min_epochs=-1)


def test_by_default_the_strength_is_measured_at_every_epochs_end_and_the_callback_stops_there(
    key_with_references, embedded_splits, tmp_path, monkeypatch
):
    predictions = iter([1e-3, 1e-9, 1e-12])  # epoch 1: too weak; epoch 2: taken
    monkeypatch.setattr("hf_ingrain.trainer.ingrain_trainer.measure_strength",
                        lambda *args, step=None, **kwargs: _strength(step=step, predicted_p_value=next(predictions)))
    callback = WatermarkTakesCallback(min_epochs=1)
    args = IngrainConfig(**training_args(tmp_path, max_steps=-1, num_train_epochs=5))
    trainer = IngrainTrainer(model=tiny_cnn(), args=args, train_dataset=embedded_splits["owner"].select(range(64)),
                             eval_dataset=embedded_splits["test"], ingrainer=key_with_references,
                             callbacks=[callback])
    trainer.train()
    measured = [entry["step"] for entry in trainer.state.log_history if "ingrain/agreement" in entry]
    assert measured == [4, 8]  # 64 examples in batches of 16: 4 steps an epoch
    assert callback.stopped_at == 8 and trainer.state.global_step == 8


def test_the_callback_stops_a_real_run_at_its_first_measurement_that_passes(key_with_references, embedded_splits,
                                                                            tmp_path, monkeypatch):
    predictions = iter([1e-3, 1e-7, 1e-9, 1e-12])  # too weak, within the margin, taken, (never reached)
    monkeypatch.setattr("hf_ingrain.trainer.ingrain_trainer.measure_strength",
                        lambda *args, step=None, **kwargs: _strength(step=step, predicted_p_value=next(predictions)))
    callback = WatermarkTakesCallback()
    trainer = _trainer(key_with_references, embedded_splits, tmp_path, callbacks=[callback], max_steps=20,
                       ingrain_strength_steps=2)
    trainer.train()
    assert callback.stopped_at == 6 and trainer.state.global_step == 6


def test_the_settings_are_checked_when_the_arguments_are_made(tmp_path):
    for name in ("ingrain_strength_steps", "ingrain_strength_examples"):
        with pytest.raises(ValueError, match=name):
            IngrainConfig(**training_args(tmp_path, **{name: -1}))
    assert strength_module.VERIFICATION_BUDGET == 1000  # the budget of the README's and the CLI's verification
