"""The victim-error fingerprint (issue 35, the free baseline): copies of the victim verify, models made without it do
not, bad inputs are refused with the fix, and a saved fingerprint gives the same verdict.

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

import pytest
import torch
from datasets import Dataset
from torch import nn

from hf_ingrain import DistillationConfig, DistillationTrainer
from hf_ingrain.fingerprints import FingerprintResult, VictimErrorFingerprint

from conftest import random_text_dataset, tiny_bert, training_args
from trained_models import cnn, fit, single_thread, splits  # noqa: F401 (single_thread: autouse, one thread)

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


def test_a_distilled_student_stands_out_of_the_references(owner, tmp_path):
    """Distillation on the attacker's own digits (logits, T = 4, no labels) copies most of the victim's errors."""
    victim, _, fingerprint = owner
    student = cnn(seed=300)
    overrides = {"max_steps": -1, "num_train_epochs": 8, "per_device_train_batch_size": 32, "learning_rate": 2e-3}
    args = DistillationConfig(**training_args(tmp_path, **overrides, logging_steps=1000), temperature=4.0)
    teacher = copy.deepcopy(victim)  # a distillation freezes its teacher; other tests fine-tune copies of the victim
    DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=splits()["attacker"]).train()
    result = fingerprint.test(student.eval(), splits()["test"])
    _report("distilled student", result)
    # Measured: agreement 0.84 against the references' 0.43 (sd 0.07), t = 5.7, p = 4e-6 (2e-6 to 1e-5 for students
    # trained by a plain loop while writing this test): clearly a copy, but short of alpha = 1e-6 with 24 references
    # (the threshold is t > 6.4), so the test asserts the evidence the fingerprint gives here, with a margin of ~25x,
    # not the verdict; an independent model's p is above 1e-2.
    assert result.agreement > result.reference_mean + 0.3
    assert result.p_value < 1e-4, result


def test_fine_tuning_one_epoch_erases_the_fingerprint(owner):
    """The fingerprint's limit, kept measured: the victim's errors lie on its decision boundary, and one epoch of
    fine-tuning (63 Adam steps at lr 1e-4 on the attacker split) moves it back among the references (measured:
    agreement 0.51 against 0.43, p ~ 0.14). A watermark trained into the model is what issue 35 weighs against this."""
    victim, _, fingerprint = owner
    tuned = fit(copy.deepcopy(victim), splits()["attacker"], epochs=1, seed=5, learning_rate=1e-4)
    result = fingerprint.test(tuned, splits()["test"])
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
