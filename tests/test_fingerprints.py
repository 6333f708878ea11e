"""The fingerprints (issue 35, the free baselines): victim errors (AKH-like), boundary points (IPGuard-like) and decision
distances (ModelDiff-like). Copies of the victim verify, models made without it do not, what each one misses is
measured, bad inputs are refused with the fix, and a saved fingerprint gives the same verdict.

Setting (the embedded MNIST sample, `trained_models.splits()`): the owner trains its victim and 24 reference models by
one recipe (a small CNN, 2 epochs of `trained_models.fit` on the owner split, seeds apart) and makes the fingerprint
on the test split, which none of them saw. The victim (~86% accurate) misclassifies 140 of the 1,000 test digits, far
above the 20 a fingerprint needs. Two epochs, not more: a reference costs ~0.6 s, and the test needs many of them
(the key-draw test's threshold at alpha = 1e-6 is t > 15 with 8 references, 7.7 with 16, 6.4 with 24). A third party's
models, trained on the attacker split with their own seeds, widths and epochs, are the independent suspects.
`trained_models.independent_model` is not reused: it trains on the splits of other seeds, whose owner and attacker
parts overlap this test split (its models would have seen some of the queries), and loads each of those splits anew.
"""

import copy
import os
import statistics

import pytest
import torch
from conftest import random_text_dataset, tiny_bert, tiny_resnet, training_args
from datasets import Dataset
from torch import nn
from trained_models import cnn, fit, single_thread, splits  # noqa: F401 (single_thread: autouse, one thread)

from hf_ingrain import DistillationConfig, DistillationTrainer
from hf_ingrain.fingerprints import (
    BoundaryFingerprint,
    DecisionDistanceFingerprint,
    FingerprintResult,
    VictimErrorFingerprint,
)
from hf_ingrain.fingerprints.base import pixel_outputs, seed_images

NUM_REFERENCES = 24
OWNER_EPOCHS = 2


def _owner_model(seed: int):
    """The owner's recipe, for the victim and its references alike (only the seed differs)."""
    return fit(cnn(seed=seed), splits()["owner"], epochs=OWNER_EPOCHS, seed=seed)


@pytest.fixture(scope="module")
def owner():
    victim = _owner_model(seed=1)
    references = [_owner_model(seed=10 + number) for number in range(NUM_REFERENCES)]
    fingerprint = VictimErrorFingerprint.create(victim, splits()["test"], references)
    return victim, references, fingerprint


@pytest.fixture(scope="module")
def independent_models():
    """Three models a third party trained on its own data (the attacker split), never queried from the victim: the
    owner's recipe (the closest to the references), and two trained longer, one of them wider."""
    attacker = splits()["attacker"]
    recipes = [{"epochs": OWNER_EPOCHS}, {"epochs": 4}, {"epochs": 4, "small": False}]
    return [fit(cnn(seed=200 + number, small=recipe.get("small", True)), attacker, epochs=recipe["epochs"],
                seed=200 + number) for number, recipe in enumerate(recipes)]


class ConstantLabel(nn.Module):
    """A suspect that answers one label for every input (logits in a dict, as `forward_logits` reads them)."""

    def __init__(self, label: int, num_labels: int = 10):
        super().__init__()
        self.label, self.num_labels = label, num_labels

    def forward(self, pixel_values):
        logits = torch.zeros(len(pixel_values), self.num_labels)
        logits[:, self.label] = 1.0
        return {"logits": logits}


def _report(name: str, result: FingerprintResult):
    print(f"{name:<28} {result}")


# --------------------------------------------------------------------------------------------------- the verdicts
def test_copies_of_the_victim_verify_and_independent_models_do_not(owner, independent_models):
    victim, _, fingerprint = owner
    test = splits()["test"]
    assert fingerprint.num_queries >= 100 and fingerprint.num_references == NUM_REFERENCES
    # a copy fine-tuned a little: 5 Adam steps at lr 1e-5 on 160 of the attacker's digits (measured: agreement 0.96);
    # its weights moved, its boundary barely (more fine-tuning: test_fine_tuning_one_epoch_erases_the_fingerprint)
    light = fit(copy.deepcopy(victim), splits()["attacker"].select(range(160)), epochs=1, seed=5, learning_rate=1e-5)
    assert any(not torch.equal(tuned, original) for tuned, original in zip(light.parameters(), victim.parameters()))
    for name, model in [("victim", victim), ("victim fine-tuned 5 steps", light)]:
        result = fingerprint.test(model, test)
        _report(name, result)
        assert result.verified and result.p_value <= 1e-6, result
    print("reference agreements", [round(value, 3) for value in fingerprint.reference_agreements()])
    # Models made without the victim sit inside the references' range (measured here: p = 0.16 for the owner's recipe
    # on other data, 0.99 for the two trained longer; 0.07 to 0.99 in the other settings tried while writing this
    # test); 1e-2 leaves room for another torch build while keeping an independent model far from alpha.
    for number, model in enumerate(independent_models):
        result = fingerprint.test(model, test)
        _report(f"independent {number}", result)
        assert not result.verified and result.p_value > 1e-2, result


@pytest.mark.slow  # ~15 s: 24 more references; CI runs it
def test_a_fingerprint_is_anyones_to_make_so_it_says_nothing_of_who_came_first(owner):
    """What a key gives and a fingerprint cannot (docs/fingerprints/README.md): precedence. A thief holding a copy of
    the published victim makes a fingerprint of that copy, with references of its own trained by the same recipe (any
    recipe it likes), and with it "verifies" the owner's original as a copy of its model. The owner's fingerprint says
    the same of the thief's copy: the two claims mirror each other, and nothing in a fingerprint dates it. (The key's
    side: a key drawn by the thief after the fact does not verify the owner's original,
    tests/test_extraction_attacks.py::test_overwriting_makes_the_thiefs_key_verify_but_not_on_the_owners_original.)"""
    victim, _, owners_fingerprint = owner
    test = splits()["test"]
    stolen = copy.deepcopy(victim)
    thiefs_references = [_owner_model(seed=500 + number) for number in range(NUM_REFERENCES)]  # its own seeds
    thiefs_fingerprint = VictimErrorFingerprint.create(stolen, test, thiefs_references)
    owners_claim, thiefs_claim = owners_fingerprint.test(stolen, test), thiefs_fingerprint.test(victim, test)
    _report("owner's claim on the copy", owners_claim)
    _report("thief's claim on the original", thiefs_claim)
    assert owners_claim.verified and thiefs_claim.verified, (owners_claim, thiefs_claim)


@pytest.fixture(scope="module")
def student(owner, tmp_path_factory):
    """The victim distilled on the attacker's own digits (logits, T = 4, no labels), 8 epochs."""
    victim = owner[0]
    student = cnn(seed=300)
    overrides = {"max_steps": -1, "num_train_epochs": 8, "per_device_train_batch_size": 32, "learning_rate": 2e-3}
    args = DistillationConfig(**training_args(tmp_path_factory.mktemp("student"), **overrides, logging_steps=1000),
                              temperature=4.0)
    teacher = copy.deepcopy(victim)  # a distillation freezes its teacher; other tests fine-tune copies of the victim
    DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=splits()["attacker"]).train()
    return student.eval()


@pytest.fixture(scope="module")
def tuned_one_epoch(owner):
    """The victim fine-tuned one epoch (63 Adam steps at lr 1e-4) on the attacker split."""
    return fit(copy.deepcopy(owner[0]), splits()["attacker"], epochs=1, seed=5, learning_rate=1e-4)


def test_a_distilled_student_stands_out_of_the_references(owner, student):
    """Distillation copies most of the victim's errors."""
    fingerprint = owner[2]
    result = fingerprint.test(student, splits()["test"])
    _report("distilled student", result)
    # Measured: agreement 0.84 against the references' 0.43 (sd 0.07), t = 5.7, p = 4e-6 (2e-6 to 1e-5 for students
    # trained by a plain loop while writing this test): clearly a copy, but short of alpha = 1e-6 with 24 references
    # (the threshold is t > 6.4), so the test asserts the evidence the fingerprint gives here, with a margin of ~25x,
    # not the verdict; an independent model's p is above 1e-2.
    assert result.agreement > result.reference_mean + 0.3
    assert result.p_value < 1e-4, result


def test_fine_tuning_one_epoch_erases_the_fingerprint(owner, tuned_one_epoch):
    """The fingerprint's limit, kept measured: the victim's errors lie on its decision boundary, and one epoch of
    fine-tuning (63 Adam steps at lr 1e-4 on the attacker split) moves it back among the references (measured:
    agreement 0.51 against 0.43, p ~ 0.14). A watermark trained into the model is what issue 35 weighs against this."""
    fingerprint = owner[2]
    result = fingerprint.test(tuned_one_epoch, splits()["test"])
    _report("victim fine-tuned 1 epoch", result)
    assert not result.verified
    assert result.agreement < 0.75  # from 1.0: most of the victim's errors were corrected or answered otherwise


def test_a_constant_label_suspect_does_not_verify(owner):
    fingerprint = owner[2]
    # the most favourable constant: the label the victim's errors fall on most often (an agreement of ~0.38 here)
    label = int(torch.bincount(fingerprint.wrong_labels).argmax())
    result = fingerprint.test(ConstantLabel(label), splits()["test"])
    _report(f"constant label {label}", result)
    assert result.agreement == pytest.approx((fingerprint.wrong_labels == label).float().mean().item())
    assert not result.verified and result.p_value > 1e-2, result


# --------------------------------------------------------------------------------------------------- bad inputs
def test_too_few_references_are_refused_with_the_fix(owner):
    victim, references, _ = owner
    with pytest.raises(ValueError, match="at least 2 reference models.*train more models"):
        VictimErrorFingerprint.create(victim, splits()["test"], references[:1])


def test_a_victim_with_too_few_errors_is_refused_with_the_fix(owner):
    victim, references, _ = owner
    digits = splits()["test"].select(range(200))[:]
    with torch.no_grad():
        labels = victim(pixel_values=digits["pixel_values"]).logits.argmax(-1)
    labels[:10] = (labels[:10] + 1) % 10  # exactly 10 errors: the victim is right on every other example
    data = Dataset.from_dict({"pixel_values": digits["pixel_values"].numpy(), "labels": labels.numpy()})
    with pytest.raises(ValueError, match="misclassifies only 10 of the 200.*at least 20.*more labelled data"):
        VictimErrorFingerprint.create(victim, data.with_format("torch"), references)
    with pytest.raises(ValueError, match="num_queries"):
        VictimErrorFingerprint.create(victim, splits()["test"], references, num_queries=5)


def test_unlabelled_data_is_refused_with_the_fix(owner):
    victim, references, _ = owner
    with pytest.raises(ValueError, match="no `labels` or `label` column.*Pass labelled data"):
        VictimErrorFingerprint.create(victim, splits()["test"].remove_columns("labels"), references)


def test_a_different_dataset_at_test_time_is_refused(owner):
    victim, _, fingerprint = owner
    test = splits()["test"]
    with pytest.raises(ValueError, match="not the inputs the fingerprint was made on"):
        fingerprint.test(victim, splits()["attacker"])  # as large, other digits
    with pytest.raises(ValueError, match="not the inputs the fingerprint was made on"):
        fingerprint.test(victim, test.shuffle(seed=0))  # the same digits in another order
    with pytest.raises(ValueError, match="reach position"):
        fingerprint.test(victim, test.select(range(100)))
    with pytest.raises(ValueError, match="lacks the columns"):
        fingerprint.test(victim, test.rename_column("pixel_values", "image"))


# --------------------------------------------------------------------------------------------------- the file
def test_save_and_load_give_the_same_verdict(owner, independent_models, tmp_path):
    victim, _, fingerprint = owner
    test = splits()["test"]
    fingerprint.save(tmp_path / "fingerprint")
    assert sorted(path.name for path in (tmp_path / "fingerprint").iterdir()) == [
        "fingerprint.json", "fingerprint.safetensors"]
    assert (tmp_path / "fingerprint").stat().st_mode & 0o077 == 0  # the queries stay the owner's
    loaded = VictimErrorFingerprint.load(tmp_path / "fingerprint")
    for name in ("indices", "wrong_labels", "reference_labels"):
        assert torch.equal(getattr(loaded, name), getattr(fingerprint, name)), name
    for model in (victim, independent_models[0]):
        assert loaded.test(model, test).to_dict() == fingerprint.test(model, test).to_dict()
    budget = loaded.test(victim, test, max_queries=50)  # a query budget: the references are counted on the same 50
    assert budget.num_queries == 50 and budget.reference_agreements == fingerprint.reference_agreements(50)
    with pytest.raises(ValueError, match="not empty"):
        fingerprint.save(tmp_path / "fingerprint")
    with pytest.raises(ValueError, match="not a saved victim-error fingerprint"):
        VictimErrorFingerprint.load(tmp_path)


def test_a_label_column_named_label_gives_the_same_fingerprint(owner):
    victim, references, fingerprint = owner
    renamed = splits()["test"].rename_column("labels", "label")
    again = VictimErrorFingerprint.create(victim, renamed, references)
    assert torch.equal(again.indices, fingerprint.indices) and again.queries_digest == fingerprint.queries_digest
    assert fingerprint.test(victim, renamed).verified  # the digest covers the inputs, not the label column's name


def test_text_models_are_fingerprinted_on_input_ids_and_attention_mask():
    """Plumbing for text: untrained tiny BERTs on random token sequences (a random model misses ~90% of random
    labels, so the victim has errors to spare); the digest covers both input columns."""
    data = random_text_dataset(num_examples=64)
    victim = tiny_bert(seed=0)
    fingerprint = VictimErrorFingerprint.create(victim, data, [tiny_bert(seed=1), tiny_bert(seed=2)], batch_size=16)
    assert fingerprint.input_columns == ["input_ids", "attention_mask"] and fingerprint.num_queries >= 20
    assert fingerprint.test(victim, data).agreement == 1.0
    masked = data.map(lambda example: {"attention_mask": [1] * 11 + [0]})  # the same tokens, another mask
    with pytest.raises(ValueError, match="not the inputs the fingerprint was made on"):
        fingerprint.test(victim, masked)


# ============================================================================= boundary points (IPGuard-like)
@pytest.fixture(scope="module")
def boundary(owner):
    victim, references, _ = owner
    return BoundaryFingerprint.create(victim, splits()["test"], references, num_queries=100)


@pytest.fixture(scope="module")
def decision_distance(owner):
    victim, references, _ = owner
    return DecisionDistanceFingerprint.create(victim, splits()["test"], references, num_pairs=100)


def test_boundary_points_tell_copies_and_students_from_independent_models(owner, boundary, independent_models,
                                                                          student, tuned_one_epoch):
    victim = owner[0]
    assert boundary.num_queries == 100 and boundary.num_references == NUM_REFERENCES
    # the queries were moved across the boundary: the victim labels them otherwise than their starting images
    starts = seed_images(splits()["test"], 100, seed=0, what="boundary")
    crossed = (pixel_outputs(victim, starts, 256) != boundary.victim_labels).float().mean()
    assert crossed >= 0.9, crossed  # measured: all of them
    results = {name: boundary.test(model) for name, model in [("victim", victim), ("student", student),
                                                                ("fine-tuned 1 epoch", tuned_one_epoch)]}
    for name, result in results.items():
        _report(f"boundary: {name}", result)
    # Measured with the default margin k = 1: references match the victim on 0.40 of the points (sd 0.06); the victim
    # on all (p = 2e-10), the distilled student on 0.94 (p = 2e-9), the victim fine-tuned one epoch on 0.80
    # (p = 3e-7). The victim and the student are asserted verified; the fine-tuned copy, ~3x from alpha, is asserted
    # far outside the references (p < 1e-4), which is what the victim-error fingerprint loses (p ~ 0.14).
    assert results["victim"].agreement == 1.0 and results["victim"].verified
    assert results["student"].verified, results["student"]
    assert results["fine-tuned 1 epoch"].p_value < 1e-4, results["fine-tuned 1 epoch"]
    # independent models: measured p = 0.57, 0.004 (the model trained longer agrees more: 0.57), 0.98
    for number, model in enumerate(independent_models):
        result = boundary.test(model)
        _report(f"boundary: independent {number}", result)
        assert not result.verified and result.p_value > 1e-3, result


def test_decision_distances_tell_copies_from_independent_models(owner, decision_distance, independent_models,
                                                                student, tuned_one_epoch):
    victim = owner[0]
    assert decision_distance.num_queries == 200 and decision_distance.num_pairs == 100
    for labels_only in (False, True):
        result = decision_distance.test(victim, labels_only=labels_only)
        _report(f"decision distance ({labels_only=}): victim", result)
        # measured: p = 8e-7 from scores (references' cosine similarity 0.70, sd 0.05), 1e-9 from labels
        assert result.agreement == pytest.approx(1.0) and result.verified, result
        for name, model in [("student", student), ("fine-tuned 1 epoch", tuned_one_epoch)]:
            result = decision_distance.test(model, labels_only=labels_only)
            _report(f"decision distance ({labels_only=}): {name}", result)
            # measured: student p = 6e-6 (scores), 2e-6 (labels); fine-tuned 2e-4 and 4e-4:
            # apart from the references, and not by alpha; asserted: above the references' mean and far from a
            # verdict that an independent model gets
            assert result.agreement > result.reference_mean and result.p_value < 1e-2, result
        for number, model in enumerate(independent_models):
            result = decision_distance.test(model, labels_only=labels_only)
            _report(f"decision distance ({labels_only=}): independent {number}", result)
            assert not result.verified and result.p_value > 1e-2, result  # measured 0.50 to 0.999


def test_fingerprints_do_not_convict_a_constant_label_suspect(boundary, decision_distance):
    label = int(torch.bincount(boundary.victim_labels).argmax())
    for result in (boundary.test(ConstantLabel(label)), decision_distance.test(ConstantLabel(label)),
                   decision_distance.test(ConstantLabel(label), labels_only=True)):
        _report(f"constant label {label}", result)
        assert not result.verified and result.p_value > 1e-2, result


def test_a_query_budget_counts_the_references_on_the_same_queries(owner, boundary, decision_distance):
    victim = owner[0]
    result = boundary.test(victim, max_queries=40)
    assert result.num_queries == 40 and result.reference_agreements == boundary.reference_agreements(40)
    result = decision_distance.test(victim, max_queries=41)  # 20 pairs, 40 queries
    assert result.num_queries == 40 and result.reference_agreements == decision_distance.reference_agreements(20)
    with pytest.raises(ValueError, match="at least 1"):
        boundary.test(victim, max_queries=0)
    with pytest.raises(ValueError, match="at least 2 \\(one pair\\)"):
        decision_distance.test(victim, max_queries=1)


def test_making_a_fingerprint_leaves_the_victim_as_it_was(owner):
    """The queries are optimised against the victim: its weights, gradients and training mode are left as they were."""
    victim, references, _ = owner
    victim.train()
    before = {name: tensor.clone() for name, tensor in victim.state_dict().items()}
    gradients = [None if parameter.grad is None else parameter.grad.clone() for parameter in victim.parameters()]
    BoundaryFingerprint.create(victim, splits()["test"], references[:2], num_queries=20, steps=5)
    DecisionDistanceFingerprint.create(victim, splits()["test"], references[:2], num_pairs=10, steps=2)
    assert victim.training
    victim.eval()
    assert all(torch.equal(before[name], tensor) for name, tensor in victim.state_dict().items())
    for parameter, gradient in zip(victim.parameters(), gradients):  # what its own training left, untouched
        assert (parameter.grad is None) == (gradient is None)
        assert gradient is None or torch.equal(parameter.grad, gradient)


def test_synthetic_fingerprints_save_load_and_refuse_altered_files(owner, boundary, decision_distance, tmp_path):
    victim = owner[0]
    for name, fingerprint, kind in [("b", boundary, BoundaryFingerprint), ("d", decision_distance,
                                                                          DecisionDistanceFingerprint)]:
        folder = tmp_path / name
        fingerprint.save(folder)
        assert folder.stat().st_mode & 0o077 == 0
        loaded = kind.load(folder)
        assert loaded.test(victim).to_dict() == fingerprint.test(victim).to_dict()
    with pytest.raises(ValueError, match="'boundary' fingerprint.*takes 'decision_distance'"):
        DecisionDistanceFingerprint.load(tmp_path / "b")
    with pytest.raises(ValueError, match="not a saved boundary fingerprint"):
        BoundaryFingerprint.load(tmp_path)
    # the owner's file, edited by hand (a query answered otherwise): refused, not silently tested
    from safetensors.torch import load_file, save_file

    path = tmp_path / "b" / "fingerprint.safetensors"
    tensors = load_file(path)
    tensors["victim_labels"][0] = (tensors["victim_labels"][0] + 1) % 10
    save_file(tensors, path)
    with pytest.raises(ValueError, match="it was altered"):
        BoundaryFingerprint.load(tmp_path / "b")


def test_synthetic_fingerprints_refuse_bad_parameters_with_the_fix(owner):
    victim, references, _ = owner
    test = splits()["test"]
    with pytest.raises(ValueError, match="at least 2 reference models.*train more models"):
        BoundaryFingerprint.create(victim, test, references[:1])
    with pytest.raises(ValueError, match="at least 2 reference models"):
        DecisionDistanceFingerprint.create(victim, test, references[:1])
    with pytest.raises(ValueError, match="`num_queries` must be at least 20"):
        BoundaryFingerprint.create(victim, test, references, num_queries=5)
    with pytest.raises(ValueError, match="`margin` must be >= 0"):
        BoundaryFingerprint.create(victim, test, references, margin=-1.0)
    with pytest.raises(ValueError, match="`num_pairs` must be at least 10"):
        DecisionDistanceFingerprint.create(victim, test, references, num_pairs=3)
    with pytest.raises(ValueError, match="`epsilon` must be in \\(0, 1\\)"):
        DecisionDistanceFingerprint.create(victim, test, references, epsilon=8.0)
    with pytest.raises(ValueError, match="needs at least 2000 starting images; the data set has 1000"):
        BoundaryFingerprint.create(victim, test, references, num_queries=2000)
    text = random_text_dataset(num_examples=64)
    with pytest.raises(ValueError, match="needs `pixel_values`.*For a text model use `VictimErrorFingerprint`"):
        DecisionDistanceFingerprint.create(tiny_bert(seed=0), text, [tiny_bert(seed=1), tiny_bert(seed=2)])
    with pytest.raises(ValueError, match="2 labels; a boundary fingerprint needs at least 3"):
        BoundaryFingerprint.create(cnn_with_labels(2), test, [cnn_with_labels(2, 1), cnn_with_labels(2, 2)])


def cnn_with_labels(num_labels: int, seed: int = 0):
    from hf_ingrain.models import SmallCNNConfig, SmallCNNForImageClassification

    torch.manual_seed(seed)
    return SmallCNNForImageClassification(SmallCNNConfig(num_labels=num_labels, hidden_channels=(8, 16),
                                                         hidden_size=32)).eval()


def test_a_transformers_resnet_on_processor_transformed_images():
    """The user's world: a transformers ResNet from config, images turned into `pixel_values` on the fly by a
    `set_transform` (as the official image-classification script does), normalised to [-1, 1]."""
    digits = splits()["test"].select(range(64))[:]
    raw = Dataset.from_dict({"image": (digits["pixel_values"] * 255).to(torch.uint8).numpy()})

    def transform(batch):
        return {"pixel_values": [torch.as_tensor(image, dtype=torch.float32) / 127.5 - 1 for image in batch["image"]]}

    raw.set_transform(transform)
    victim = tiny_resnet(num_labels=10, seed=0).eval()
    references = [tiny_resnet(num_labels=10, seed=seed).eval() for seed in (1, 2)]
    boundary = BoundaryFingerprint.create(victim, raw, references, num_queries=20, steps=20)
    assert boundary.queries.min() >= -1 and boundary.queries.max() <= 1  # the pixel range of the transformed images
    assert boundary.test(victim).agreement == 1.0
    pairs = DecisionDistanceFingerprint.create(victim, raw, references, num_pairs=10, steps=3)
    assert pairs.twins.min() >= -1 and pairs.twins.max() <= 1
    assert (pairs.twins - pairs.images).abs().max() <= 0.1 * 2 + 1e-6  # within epsilon of the pixel range
    assert pairs.test(victim).agreement == pytest.approx(1.0)


def test_references_that_never_agree_do_not_make_any_agreement_a_verdict():
    """Found on a tiny run: two references at agreement 0 on 5 pairs made the spread's floor 0 and a copy's p 1e-7.
    The floor is one agreement's binomial noise at the references' rate smoothed by one agreement and one miss."""
    from hf_ingrain.verification import key_draw_p_value

    p_value, numbers = key_draw_p_value(1.0, [0.0, 0.0], 5)
    assert p_value > 1e-2 and numbers["sd"] == pytest.approx((1 / 7 * 6 / 7 / 5) ** 0.5)
    # with many queries and references spread as usual, the floor does not bind: the references' own spread does
    p_value, numbers = key_draw_p_value(0.9, [0.40, 0.45, 0.50, 0.42, 0.48], 1000)
    assert numbers["sd"] == pytest.approx(statistics.stdev([0.40, 0.45, 0.50, 0.42, 0.48]))


# ============================================================================= in the benchmark grid
@pytest.mark.slow  # ~12 s idle, 27 s under load: CI runs it; the default pytest stays within its 5 minutes
def test_the_fingerprints_are_rows_of_the_benchmark_grid(tmp_path, monkeypatch):
    """A config adds the fingerprints as schemes: together they protect one plain model of its own seed (each attack
    made once for all of them), each is tested in every column, and in the false-claims step on every other model of
    the run (none derived from their victim)."""
    from hf_ingrain.benchmark import ExperimentConfig, run_benchmark
    from hf_ingrain.benchmark.config import FINGERPRINTS
    from hf_ingrain.benchmark.experiment import _Experiment

    config = ExperimentConfig(
        max_examples=300, epochs=1, ingrainer_steps=5, num_reference_keys=1, ingrain_lambdas=[0.5],
        hidden_channels=[4, 8], hidden_size=16, schemes=["victim_errors", "boundary", "decision_distance"],
        num_fingerprint_references=3, attacks=["prune_50"],
    )
    attacked, attack = [], _Experiment.attack

    def counted(self, name, *rest):
        attacked.append(name)
        return attack(self, name, *rest)

    monkeypatch.setattr(_Experiment, "attack", counted)
    results = run_benchmark(config, str(tmp_path / "run"), show_progress=False)
    assert attacked == ["prune_50"] * 3  # the reference, the ingrained model, and the fingerprints' one victim
    cells = {(cell["scheme"], cell["attack"]): cell for cell in results["cells"]}
    for scheme in ("victim_errors", "boundary", "decision_distance"):
        before = cells[scheme, "none"]
        assert before["protocol"] == f"{scheme}_fingerprint" and 0 < before["p_value"] <= 1
        assert before["score"] == pytest.approx(1.0)  # the victim agrees with itself on every query
        assert cells[scheme, "prune_50"]["p_value"] is not None
    # one victim, one pruned copy: every fingerprint reads the same models (their accuracies are those of one model)
    for attack in ("none", "prune_50"):
        assert len({cells[scheme, attack]["test_accuracy"] for scheme in FINGERPRINTS}) == 1
    assert cells["reference", "none"]["test_accuracy"] != cells["boundary", "none"]["test_accuracy"]  # its own seed
    claims = [claim for claim in results["false_claims"] if claim["key"] == "boundary"]
    assert {claim["model"] for claim in claims} == {"reference", "ingrain_lambda_0.5", "_thief_0"}
    ingrain_claims = {claim["model"] for claim in results["false_claims"] if claim["key"] == "ingrain"}
    assert ingrain_claims == {"reference", "_fingerprint_victim", "_thief_0"}  # the fingerprints' victim too
    table = (tmp_path / "run" / "results.md").read_text()
    assert all(f"| {scheme} |" in table for scheme in ("victim_errors", "boundary", "decision_distance"))
    assert "the fingerprints' one victim as `_fingerprint_victim`" in table
    models = sorted(os.listdir(tmp_path / "run" / "models"))
    assert [name for name in models if name.startswith("_fingerprint_reference")] == [
        f"_fingerprint_reference_{number}" for number in range(3)]
    assert "_fingerprint_victim" in models and not set(FINGERPRINTS) & set(models)
    with pytest.raises(ValueError, match="Unknown schemes \\['ipguard'\\]"):
        ExperimentConfig(schemes=["ipguard"])
    with pytest.raises(ValueError, match="num_fingerprint_references"):
        ExperimentConfig(num_fingerprint_references=1)
