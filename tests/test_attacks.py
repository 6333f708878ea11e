import os

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import TrainingArguments
from transformers.modeling_outputs import ImageClassifierOutput

from hf_ingrain import DistillationConfig, DistillationTrainer, verify
from hf_ingrain.attacks import (
    FinePruneAttack, FineTuneAttack, InputTransformAttack, PruneAttack, QuantizeAttack, WeightNoiseAttack,
)
from hf_ingrain.attacks.prune import prunable_weights
from hf_ingrain.cli import main
from hf_ingrain.suspects import collect_scores, load_model

from conftest import NUM_LABELS, random_image_dataset, tiny_cnn, tiny_resnet, training_args


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model):
    return {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}


def _distill(student, teacher, data, tmp_path, **overrides):
    config = {**training_args(tmp_path), **overrides}
    trainer = DistillationTrainer(model=student, teacher=teacher, args=DistillationConfig(**config), train_dataset=data)
    trainer.train()
    return trainer


def _top1_agreement(a, b, data):
    return (collect_scores(a, data)[0].argmax(-1) == collect_scores(b, data)[0].argmax(-1)).float().mean().item()


# ----------------------------------------------------------------------------------------------- DistillationConfig
def test_config_rejects_invalid_fields_and_names_the_fix(tmp_path):
    out = str(tmp_path)
    with pytest.raises(ValueError, match="temperature"):
        DistillationConfig(output_dir=out, temperature=0)
    with pytest.raises(ValueError, match="teacher_weight.*1.0"):
        DistillationConfig(output_dir=out, teacher_weight=1.5)
    with pytest.raises(ValueError, match="teacher_output"):
        DistillationConfig(output_dir=out, teacher_output="softmax")
    with pytest.raises(ValueError, match="top_k"):
        DistillationConfig(output_dir=out, teacher_output="top_k", top_k=0)
    config = DistillationConfig(output_dir=out)
    assert (config.temperature, config.teacher_weight, config.teacher_output, config.top_k) == (4.0, 1.0, "logits", 5)


# ----------------------------------------------------------------------------------------------- DistillationTrainer
def test_distillation_lifts_agreement_far_above_chance(mnist_teacher, embedded_splits, tmp_path):
    test = embedded_splits["test"]
    student = tiny_cnn(seed=1)
    before = _top1_agreement(student, mnist_teacher, test)
    trainer = _distill(
        student, mnist_teacher, embedded_splits["attacker"], tmp_path,
        max_steps=60, per_device_train_batch_size=64, learning_rate=3e-3,
    )
    after = _top1_agreement(student, mnist_teacher, test)
    majority = torch.bincount(collect_scores(mnist_teacher, test)[0].argmax(-1)).max().item() / len(test)
    print(f"agreement before {before:.3f}, after {after:.3f}, teacher's majority class {majority:.3f}")
    # Chance is 1/10; a constant student would agree at the teacher's majority share (~0.12 for this teacher, which is
    # ~86% accurate). 60 steps of distillation reach ~0.8 on held-out digits (measured); 0.5 leaves a wide margin.
    assert after >= 0.5 and after > majority + 0.25 and after > before + 0.25
    logged = [entry for entry in trainer.state.log_history if "distill/kl" in entry]
    assert logged and all(0 <= entry["distill/agreement"] <= 1 and entry["distill/kl"] >= 0 for entry in logged)
    assert logged[-1]["distill/agreement"] > logged[0]["distill/agreement"]


def test_student_of_another_architecture(tmp_path):
    teacher, student = tiny_cnn(seed=0), tiny_resnet(seed=1)
    teacher_before, before = _weights(teacher), _weights(student)
    trainer = _distill(student, teacher, random_image_dataset(), tmp_path)
    assert _changed(before, student)
    assert not _changed(teacher_before, teacher)  # frozen
    assert all(not p.requires_grad for p in teacher.parameters())
    assert any("distill/agreement" in entry for entry in trainer.state.log_history)


class _MonotoneTeacher(nn.Module):
    """The same teacher behind a strictly increasing map of its logits: other scores, the same top-1 labels."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher  # no `config`: the trainer reads the number of labels from an output

    def forward(self, pixel_values=None, **kwargs):
        logits = self.teacher(pixel_values=pixel_values).logits
        return ImageClassifierOutput(logits=logits**3 + 5 * logits)


@pytest.mark.parametrize("teacher_output", ["label", "logits"])
def test_label_mode_uses_no_teacher_scores(teacher_output, tmp_path):
    data = random_image_dataset()
    trained = {}
    for name, teacher in (("plain", tiny_cnn(seed=0)), ("monotone", _MonotoneTeacher(tiny_cnn(seed=0)))):
        student = tiny_cnn(seed=1)
        _distill(student, teacher, data, tmp_path / name, teacher_output=teacher_output)
        trained[name] = student.state_dict()
    identical = all(torch.equal(v, trained["monotone"][k]) for k, v in trained["plain"].items())
    # Only the top-1 labels reach the loss in "label" mode; with scores, the transformed teacher trains differently.
    assert identical == (teacher_output == "label")


def test_labels_are_ignored_when_alpha_is_one(tmp_path):
    data = random_image_dataset(32)
    relabelled = data.map(lambda example: {"labels": (example["labels"] + 3) % NUM_LABELS})
    unlabelled = data.remove_columns("labels")
    trained = []
    for index, dataset in enumerate((data, relabelled, unlabelled)):
        student = tiny_cnn(seed=1)
        _distill(student, tiny_cnn(seed=0), dataset, tmp_path / str(index), per_device_train_batch_size=8)
        trained.append(student.state_dict())
    for other in trained[1:]:
        for key, value in trained[0].items():
            torch.testing.assert_close(value, other[key], rtol=1e-5, atol=1e-6)


def test_task_term_uses_labels_when_alpha_below_one(tmp_path):
    data = random_image_dataset(32)
    trainer = _distill(tiny_cnn(seed=1), tiny_cnn(seed=0), data, tmp_path, teacher_weight=0.5)
    logged = [entry for entry in trainer.state.log_history if "task/loss" in entry]
    assert logged
    first = logged[0]
    assert first["loss"] == pytest.approx(0.5 * first["distill/kl"] + 0.5 * first["task/loss"], rel=1e-3)
    with pytest.raises(ValueError, match="teacher_weight=1.0"):
        _distill(tiny_cnn(seed=1), tiny_cnn(seed=0), data.remove_columns("labels"), tmp_path, teacher_weight=0.5)


@pytest.mark.parametrize("with_labels", [True, False])
def test_gradient_accumulation_matches_the_full_batch(with_labels, tmp_path):
    # With labels the Trainer counts the accumulated batch (num_items_in_batch); without, it averages micro-batches.
    data = random_image_dataset(32) if with_labels else random_image_dataset(32).remove_columns("labels")
    models = {}
    for name, batch, steps in (("full", 16, 1), ("accumulated", 8, 2)):
        student = tiny_cnn(seed=1)
        args = training_args(
            tmp_path / name, per_device_train_batch_size=batch, max_steps=2, optim="sgd", learning_rate=0.5
        )
        config = DistillationConfig(**args, gradient_accumulation_steps=steps)
        trainer = DistillationTrainer(model=student, teacher=tiny_cnn(seed=0), args=config, train_dataset=data)
        trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(data)
        trainer.train()
        models[name] = student
    for key, value in models["full"].state_dict().items():
        torch.testing.assert_close(value, models["accumulated"].state_dict()[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("teacher_output", ["probabilities", "top_k"])
def test_other_teacher_outputs_train(teacher_output, tmp_path):
    student = tiny_cnn(seed=1)
    before = _weights(student)
    data = random_image_dataset()
    trainer = _distill(student, tiny_cnn(seed=0), data, tmp_path, teacher_output=teacher_output, top_k=3)
    assert _changed(before, student) and any("distill/kl" in e for e in trainer.state.log_history)
    held_out = random_image_dataset(16, seed=1)
    trainer.evaluate(held_out)
    metrics = trainer.state.log_history[-1]
    # the logged evaluation agreement is the student's top-1 agreement with the teacher on those 16 examples
    assert metrics["eval_distill/agreement"] == pytest.approx(_top1_agreement(student, trainer.teacher, held_out))
    assert metrics["eval_distill/kl"] > 0


def test_mismatched_label_counts_and_bad_arguments_raise_before_training(tmp_path):
    args = DistillationConfig(**training_args(tmp_path))
    data = random_image_dataset()
    with pytest.raises(ValueError, match="num_labels=10"):
        DistillationTrainer(model=tiny_cnn(num_labels=5), teacher=tiny_cnn(), args=args, train_dataset=data)
    with pytest.raises(ValueError, match="num_labels=10"):  # a teacher without a config: its output width counts
        DistillationTrainer(
            model=tiny_cnn(num_labels=5), teacher=_MonotoneTeacher(tiny_cnn()), args=args, train_dataset=data
        )
    with pytest.raises(ValueError, match="DistillationConfig"):
        DistillationTrainer(model=tiny_cnn(), teacher=tiny_cnn(), args=TrainingArguments(**training_args(tmp_path)))
    with pytest.raises(ValueError, match="top_k"):
        DistillationTrainer(
            model=tiny_cnn(), teacher=tiny_cnn(), train_dataset=data,
            args=DistillationConfig(**training_args(tmp_path), teacher_output="top_k", top_k=11),
        )
    with pytest.raises(ValueError, match="neither a local folder"):
        DistillationTrainer(model=tiny_cnn(), teacher=str(tmp_path / "missing"), args=args, train_dataset=data)


def test_teacher_from_a_folder_and_never_saved_with_the_student(tmp_path):
    teacher = tiny_resnet(seed=0)
    teacher.save_pretrained(tmp_path / "teacher")
    student = tiny_cnn(seed=1)
    trainer = _distill(student, str(tmp_path / "teacher"), random_image_dataset(), tmp_path, max_steps=2)
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, trainer.teacher.state_dict()[name]), name
    trainer.save_model()
    saved = load_file(os.path.join(tmp_path, "out", "model.safetensors"))
    assert set(saved) == set(student.state_dict())


# ----------------------------------------------------------------------------------------------- fine-tuning
def _finetune(model, mode, learning_rate=1e-2, **kwargs):
    attack = FineTuneAttack(model, mode=mode, learning_rate=learning_rate, max_steps=3, batch_size=16, **kwargs)
    return attack.run(random_image_dataset())


def test_ftll_changes_only_the_last_layer_and_ftal_changes_all():
    model = tiny_cnn(seed=0)
    before = _weights(model)
    assert _changed(before, _finetune(model, "FTLL")) == {"classifier.weight", "classifier.bias"}
    assert _changed(before, _finetune(model, "FTAL")) == set(before)
    assert not _changed(before, model)  # the target itself is untouched
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("mode", ["RTLL", "RTAL"])
def test_retraining_modes_reinitialise_the_last_layer(mode):
    model = tiny_cnn(seed=0)
    before = _weights(model)
    # With a zero learning rate only the re-initialisation changes the model: the last layer, and nothing else.
    assert _changed(before, _finetune(model, mode, learning_rate=0.0)) == {"classifier.weight", "classifier.bias"}
    assert not _changed(before, _finetune(model, "FT" + mode[2:], learning_rate=0.0))
    # The re-initialisation is seeded.
    first, second = _finetune(model, mode, learning_rate=0.0), _finetune(model, mode, learning_rate=0.0)
    assert torch.equal(first.classifier.weight, second.classifier.weight)
    trained = _finetune(model, mode)
    expected = {"classifier.weight", "classifier.bias"} if mode == "RTLL" else set(before)
    assert _changed(before, trained) == expected


def test_retraining_with_label_smoothing_goes_through_the_training_arguments():
    # the benchmark's finetune_ls_0.1 column: FTAL on smoothed targets, the same run otherwise
    data = random_image_dataset(32)
    plain = FineTuneAttack(tiny_cnn(seed=0), max_steps=2, batch_size=16).run(data)
    smoothed = FineTuneAttack(
        tiny_cnn(seed=0), max_steps=2, batch_size=16, training_args={"label_smoothing_factor": 0.5}
    ).run(data)
    again = FineTuneAttack(tiny_cnn(seed=0), max_steps=2, batch_size=16).run(data)
    assert torch.equal(plain.classifier.weight, again.classifier.weight)
    assert not torch.equal(plain.classifier.weight, smoothed.classifier.weight)


def test_finetune_checks_its_parameters_and_data():
    with pytest.raises(ValueError, match="FTLL"):
        FineTuneAttack(tiny_cnn(), mode="finetune")
    with pytest.raises(ValueError, match="no module named"):
        FineTuneAttack(tiny_cnn(), last_layer="head")
    with pytest.raises(ValueError, match="labels"):
        FineTuneAttack(tiny_cnn(), max_steps=1).run(random_image_dataset().remove_columns("labels"))


# ----------------------------------------------------------------------------------------------- pruning, quantization
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.9])
def test_pruning_zeroes_exactly_the_smallest_weights(rate):
    model = tiny_resnet(seed=0)
    pruned = PruneAttack(model, rate=rate).run()
    original = torch.cat([w.detach().flatten() for w in prunable_weights(model)])
    weights = torch.cat([w.detach().flatten() for w in prunable_weights(pruned)])
    assert (original != 0).all()  # so every zero below was set by the attack
    assert int((weights == 0).sum()) == round(rate * len(weights))
    if 0 < rate:
        assert original[weights == 0].abs().max() <= original[weights != 0].abs().min()
    assert torch.equal(weights[weights != 0], original[weights != 0])
    assert torch.equal(pruned.classifier[1].bias, model.classifier[1].bias)  # biases are kept
    with pytest.raises(ValueError, match="rate"):
        PruneAttack(model, rate=1.5)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_uniform_quantization_leaves_at_most_two_to_the_bits_values_per_tensor(bits):
    model = tiny_cnn(seed=0)
    quantized = QuantizeAttack(model, bits=bits).run()
    for original, weight in zip(prunable_weights(model), prunable_weights(quantized)):
        assert len(weight.unique()) <= 2**bits
        assert len(weight.unique()) > 1
        step = (original.max() - original.min()) / (2**bits - 1)
        assert (weight - original).abs().max() <= step / 2 + 1e-6  # each weight goes to its nearest level


@pytest.mark.filterwarnings("ignore:.*quantiz.*deprecated")  # PyTorch deprecates torch.ao quantization (still there)
def test_dynamic_int8_quantization_still_runs_and_verifies(small_key):
    model = tiny_cnn(seed=0).eval()
    quantized = QuantizeAttack(model, method="dynamic").run()
    dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
    assert isinstance(quantized.fc, dynamic_linear) and isinstance(quantized.classifier, dynamic_linear)
    data = random_image_dataset(128)
    # int8 weights and activations move the logits a little, the top-1 labels hardly at all.
    assert _top1_agreement(model, quantized, data) >= 0.9
    # a model that carries the key's carriers still does once quantized: int8 keeps what a watermark test reads
    assert verify(QuantizeAttack(small_key.ingrainer, method="dynamic").run(), small_key, protocol="carriers").verified
    with pytest.raises(ValueError, match="int8"):
        QuantizeAttack(model, bits=4, method="dynamic")


def test_weight_noise_is_relative_to_each_tensor_seeded_and_erases_carriers_only_at_large_scales(small_key):
    model = tiny_cnn(seed=0)
    noisy = WeightNoiseAttack(model, scale=0.1, seed=3).run()
    for original, weight in zip(prunable_weights(model), prunable_weights(noisy)):
        # the noise's spread, relative to the tensor's: 0.1 up to sampling error (the smallest tensor has 160
        # weights: the sd of a standard deviation estimated from n = 160 draws is 1 / sqrt(2n) = 6%, so +-30% is 5 sd)
        assert 0.07 < ((weight - original).std() / original.std()).item() < 0.13
    assert torch.equal(noisy.classifier.bias, model.classifier.bias)  # biases are kept
    again, other = WeightNoiseAttack(model, scale=0.1, seed=3).run(), WeightNoiseAttack(model, scale=0.1, seed=4).run()
    assert torch.equal(again.conv1.weight, noisy.conv1.weight)
    assert not torch.equal(other.conv1.weight, noisy.conv1.weight)
    # the key's ingrainer fits its carriers: a little noise keeps that trigger set, a lot erases it (and the model)
    assert verify(WeightNoiseAttack(small_key.ingrainer, scale=0.02).run(), small_key, protocol="carriers").verified
    assert not verify(WeightNoiseAttack(small_key.ingrainer, scale=3.0).run(), small_key, protocol="carriers").verified
    with pytest.raises(ValueError, match="scale"):
        WeightNoiseAttack(model, scale=0.0)


@pytest.mark.parametrize(
    "transform, mild, harsh, harsh_erases",
    [("jpeg", 90, 1, False), ("blur", 0.3, 4.0, True), ("noise", 0.01, 1.0, True)],
)
def test_input_transforms_change_every_query_and_what_they_do_to_a_trigger_set(
    small_key, transform, mild, harsh, harsh_erases
):
    # The suspect's endpoint transforms every query; the weights stay as they are. The key's ingrainer fits its
    # carriers (a trigger set of uniform-noise images): a mild transform leaves them; a strong blur or strong noise
    # erases them, and JPEG does not, even at quality 1 (measured: 19 of 20 carriers kept).
    model = small_key.ingrainer
    attack = InputTransformAttack(model, transform=transform, strength=harsh, seed=0)
    pixels = torch.rand(4, 1, 28, 28)
    transformed = attack.run().transform(pixels)
    assert transformed.shape == pixels.shape and not torch.equal(transformed, pixels)
    assert transformed.min() >= 0 and transformed.max() <= 1
    endpoint = attack.run()  # a fresh run: the noise starts again from the seed
    assert torch.equal(endpoint(pixel_values=pixels).logits, model(pixel_values=transformed).logits)
    assert attack.parameters["transform"] == transform
    mild_endpoint = InputTransformAttack(model, transform=transform, strength=mild).run()
    assert verify(mild_endpoint, small_key, protocol="carriers").verified
    assert verify(attack.run(), small_key, protocol="carriers").verified is not harsh_erases


def test_input_transforms_refuse_bad_parameters():
    model = tiny_cnn()
    with pytest.raises(ValueError, match="one of"):
        InputTransformAttack(model, transform="crop")
    with pytest.raises(ValueError, match="JPEG quality"):
        InputTransformAttack(model, transform="jpeg", strength=100)
    with pytest.raises(ValueError, match="strength"):
        InputTransformAttack(model, transform="blur", strength=0)
    with pytest.raises(ValueError, match="value_range"):
        InputTransformAttack(model, transform="noise", value_range=(1, -1))


def test_fine_pruning_erases_a_trigger_set_that_fine_tuning_alone_keeps(small_key, embedded_splits):
    # The key's ingrainer carries its carriers (a trigger set of noise images). On 1,000 clean digits, 60 steps of
    # fine-tuning keep it (measured: 15 of 20 carriers, p = 9e-12); pruning the half of conv2's channels that the
    # digits leave least active first erases it with the same fine-tuning (6 of 20, p = 0.01).
    data = embedded_splits["attacker"].select(range(1000))
    settings = dict(max_steps=60, batch_size=50, learning_rate=1e-2)
    tuned = FineTuneAttack(small_key.ingrainer, mode="FTAL", **settings).run(data)
    assert verify(tuned, small_key, protocol="carriers").verified
    attack = FinePruneAttack(small_key.ingrainer, rate=0.5, **settings)
    fine_pruned = attack.run(data)
    assert not verify(fine_pruned, small_key, protocol="carriers").verified
    assert len(attack.pruned_channels) == 16 and attack.parameters["layer"] == "conv2"
    assert (fine_pruned.conv2.weight[attack.pruned_channels] == 0).all()  # held at zero through the fine-tuning
    assert (fine_pruned.conv2.bias[attack.pruned_channels] == 0).all()
    assert not fine_pruned.conv2._forward_pre_hooks  # nothing left behind: the model saves and runs as a plain one
    with pytest.raises(ValueError, match="rate"):
        FinePruneAttack(small_key.ingrainer, rate=1.0)
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        FinePruneAttack(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="FTAL"):
        FinePruneAttack(small_key.ingrainer, mode="FTLL")


def test_attacks_compose_prune_then_finetune(small_key):
    model = tiny_cnn(seed=0)
    pruned = PruneAttack(model, rate=0.5).run()
    attack = FineTuneAttack(pruned, mode="FTLL", max_steps=3, batch_size=16, learning_rate=1e-2)
    attacked = attack.run(random_image_dataset())
    # The frozen layers keep the pruning's zeros; the last layer is fine-tuned away from the pruned one.
    for name in ("conv1", "conv2", "fc"):
        assert torch.equal(getattr(attacked, name).weight, getattr(pruned, name).weight)
    assert (attacked.conv1.weight == 0).any()
    assert not torch.equal(attacked.classifier.weight, pruned.classifier.weight)


# ----------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    "attack, extra",
    [
        ("distill", ["--max-steps", "2", "--student-arch", "small", "--temperature", "3"]),
        ("finetune", ["--max-steps", "2", "--mode", "RTLL"]),
        ("fineprune", ["--max-steps", "2", "--rate", "0.25"]),
        ("prune", ["--rate", "0.25"]),
        ("quantize", ["--bits", "4"]),
        ("noise", ["--scale", "0.2"]),
        ("wrk", ["--max-steps", "2", "--num-perturbed", "32"]),
        ("dehydration", ["--max-steps", "2", "--samples-per-class", "2", "--inversion-steps", "3"]),
        ("removalnet", ["--max-steps", "2", "--num-examples", "64"]),
    ],
)
def test_cli_saves_the_attacked_model_with_its_card(attack, extra, tmp_path, capsys):
    target = tiny_cnn(seed=0)
    target.save_pretrained(tmp_path / "target")
    output = tmp_path / "attacked"
    assert main(["attack", attack, "--model", str(tmp_path / "target"), "--output", str(output), *extra]) == 0
    assert sorted(os.listdir(output)) == ["README.md", "config.json", "model.safetensors"]
    card = (output / "README.md").read_text()
    recorded = f"| {extra[0].lstrip('-').replace('-', '_')} | {extra[1]} |"  # e.g. "| rate | 0.25 |"
    assert attack in card and "watermark-removal-attack" in card and recorded in card
    assert str(output) in capsys.readouterr().out
    attacked = load_model(str(output))  # the folder loads back, and holds what the attack did
    weights = prunable_weights(attacked)
    if attack == "prune":
        assert sum(int((w == 0).sum()) for w in weights) == round(0.25 * sum(w.numel() for w in weights))
    if attack == "quantize":
        assert all(len(w.unique()) <= 2**4 for w in weights)
    if attack == "noise":
        assert all(not torch.equal(w, t) for w, t in zip(weights, prunable_weights(target)))
    if attack == "finetune":  # RTLL: the last layer re-initialised and trained, the rest as it was
        assert not torch.equal(attacked.classifier.weight, target.classifier.weight)
        assert torch.equal(attacked.conv1.weight, target.conv1.weight)
    if attack == "distill":  # a fresh small student: another architecture than the target
        assert attacked.config.hidden_channels == [8, 16] and attacked.config.num_labels == NUM_LABELS


def test_cli_reports_errors_in_one_line_before_any_work(tmp_path, capsys):
    code = main(["attack", "prune", "--model", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")])
    assert code == 2
    error = capsys.readouterr().err
    assert "nowhere" in error and "save_pretrained" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("")
    tiny_cnn().save_pretrained(tmp_path / "target")
    assert main(["attack", "prune", "--model", str(tmp_path / "target"), "--output", str(tmp_path / "taken")]) == 2
    assert "choose a new output folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- what an API returns
def test_probabilities_are_what_an_api_returns_rounded_not_the_logits(tmp_path):
    from hf_ingrain.losses import scores_to_log_probs

    logits = torch.randn(64, NUM_LABELS, generator=torch.Generator().manual_seed(0)) * 4
    rounded = scores_to_log_probs(logits, "probabilities", probability_decimals=2).exp()
    exact = logits.softmax(-1)
    assert torch.allclose(rounded.sum(-1), torch.ones(64))
    assert (exact < 0.005).any()  # some probabilities are below the last decimal...
    for row, small in zip(rounded, exact < 0.005):  # ...and the API makes them all alike (one row at a time)
        assert torch.allclose(row[small], row[small].min().expand(int(small.sum())))
    # the others within rounding: half a step (0.005), plus the renormalisation after the floor, at most K * step / 4
    assert (rounded - exact).abs().max() <= 0.005 + NUM_LABELS * 0.01 / 4
    # so the student learns something else than from the logits (at T = 4, small logits matter)
    data = random_image_dataset()
    trained = {}
    for kind in ("logits", "probabilities"):
        student = tiny_cnn(seed=1)
        _distill(student, tiny_cnn(seed=0), data, tmp_path / kind, teacher_output=kind, probability_decimals=2)
        trained[kind] = student.classifier.weight.detach().clone()
    assert not torch.allclose(trained["logits"], trained["probabilities"], atol=1e-6)


def test_the_old_name_alpha_still_works_with_a_warning(tmp_path):
    with pytest.warns(FutureWarning, match="teacher_weight"):
        config = DistillationConfig(output_dir=str(tmp_path), alpha=0.3)
    assert config.teacher_weight == 0.3 and config.alpha is None
    with pytest.raises(ValueError, match="set `teacher_weight` only"):
        DistillationConfig(output_dir=str(tmp_path), alpha=0.3, teacher_weight=0.5)
