"""Keys anyone can check (hf_ingrain.keys.audit): an honest key re-derives from its seed, its recipe and its benign data,
bit for bit; a key folder written by hand does not, and the audit says what differs before a claim can rest on it."""

import copy

import pytest
import torch

from hf_ingrain import WatermarkKey
from hf_ingrain.cli import main
from hf_ingrain.keys import audit_key

from conftest import tiny_cnn, training_args
from trained_models import single_thread  # noqa: F401 (autouse fixture: this module runs on one thread)



@pytest.fixture(scope="module")
def benign(embedded_splits):
    return embedded_splits["owner"].select(range(256))


@pytest.fixture(scope="module")
def saved_key(benign, tmp_path_factory):
    """A small honest key (3 references, 30 steps: an audit's cost, not a key's strength), as the owner saved it."""
    key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=20, seed=0)
    key.train_ingrainer(benign_dataset=benign, num_steps=30, batch_size=64, num_reference_keys=3, show_progress=False)
    folder = tmp_path_factory.mktemp("audit") / "key"
    key.save(folder)
    return folder


def test_an_honest_key_re_derives_from_its_seed_recipe_and_data(saved_key, benign):
    key = WatermarkKey.load(saved_key)
    assert key.training_info["benign_digest"] and key.training_info["versions"]["torch"] == torch.__version__
    audit = audit_key(key, benign)
    assert audit.passed and audit.checked == ["ingrainer", "reference 0", "reference 1", "reference 2"], audit
    assert audit.commitment == key.commitment() and str(audit).startswith("KEY AUDITED")
    sampled = audit_key(key, benign, num_references=1, seed=3)  # a sample drawn when the audit runs
    assert sampled.passed and len(sampled.checked) == 2 and sampled.checked[0] == "ingrainer"


def test_a_classifier_copied_into_the_key_folder_is_refused(saved_key, benign, embedded_splits, tmp_path):
    # The forgery of the claims issue: an ordinary classifier of the task, fitted to the key's own carriers so that the
    # folder loads (it fits them as key.json records), with the honest carriers, salt, seed and references kept.
    from hf_ingrain.keys.inputs import carrier_batch
    from transformers import Trainer, TrainingArguments
    from datasets import Dataset

    key = WatermarkKey.load(saved_key)
    forged = tiny_cnn(seed=5)
    carriers = carrier_batch(key)
    fit = Dataset.from_dict({"pixel_values": carriers["pixel_values"].repeat(20, 1, 1, 1).numpy(),
                             "labels": key.carrier_labels.repeat(20).numpy()}).with_format("torch")
    Trainer(model=forged, args=TrainingArguments(**training_args(tmp_path, max_steps=60, learning_rate=3e-3)),
            train_dataset=fit).train()
    key.ingrainer = forged.eval()
    fitted = (forged(pixel_values=carriers["pixel_values"]).logits.argmax(-1) == key.carrier_labels).float().mean()
    key.training_info["carrier_accuracy"] = float(fitted)
    key.save(tmp_path / "forged")
    loaded = WatermarkKey.load(tmp_path / "forged")  # it loads: nothing but a re-derivation tells
    audit = audit_key(loaded, benign)
    assert not audit.passed and "ingrainer" not in audit.checked
    assert any("its ingrainer is not what its seed and recipe give" in reason for reason in audit.refusals)


def test_what_an_audit_refuses_before_any_training(saved_key, benign, embedded_splits, tmp_path):
    key = WatermarkKey.load(saved_key)
    other_data = embedded_splits["attacker"].select(range(256))
    audit = audit_key(key, other_data)
    assert not audit.passed and "not the data the key was trained on" in audit.refusals[0] and not audit.checked
    with pytest.raises(ValueError, match="benign_dataset="):
        audit_key(key)

    relabelled = copy.deepcopy(key)
    relabelled.carrier_labels = (relabelled.carrier_labels + 1) % 10  # carriers chosen by hand, not by the seed
    assert "not the ones its seed draws" in audit_key(relabelled, benign).refusals[0]

    duplicated = copy.deepcopy(key)
    duplicated.reference_ingrainers[2] = copy.deepcopy(duplicated.reference_ingrainers[0])
    assert "two of its ingrainers are the same model" in audit_key(duplicated, benign).refusals[0]
    duplicated.save(tmp_path / "duplicated")
    with pytest.raises(ValueError, match="two of its ingrainers are the same model"):
        WatermarkKey.load(tmp_path / "duplicated")  # refused on load too: no test runs on such a key


def test_the_audit_from_the_shell(saved_key, benign, tmp_path, capsys):
    benign.save_to_disk(str(tmp_path / "owner_data"))
    assert main(["audit-key", str(saved_key), "--data", str(tmp_path / "owner_data")]) == 0
    assert capsys.readouterr().out.startswith("KEY AUDITED: 4 ingrainers")
    assert main(["audit-key", str(saved_key)]) == 2  # trained on data: the audit needs it, said before any work
    assert "--data" in capsys.readouterr().err
    assert main(["audit-key", str(saved_key), "--data", "mnist-5k", "--split", "attacker"]) == 1
    assert "KEY REFUSED" in capsys.readouterr().out


def test_a_key_extended_to_more_references_is_the_key_trained_with_them_from_the_start(saved_key, benign, tmp_path):
    # Each reference depends on the key's seed, its index and the recipe alone: adding references later (say 16 -> 32,
    # the lever measured in docs/arch_cost) costs only the new ones, and gives the very key a longer training gives.
    extended = WatermarkKey.load(saved_key)
    whole = copy.deepcopy(extended)
    whole.train_ingrainer(benign_dataset=benign, num_steps=30, batch_size=64, num_reference_keys=5, show_progress=False)
    before = extended.commitment()
    extended.extend_references(5, benign_dataset=benign, show_progress=False)
    assert len(extended.reference_ingrainers) == 5 and extended.training_info["num_reference_keys"] == 5
    for mine, theirs in zip([extended.ingrainer, *extended.reference_ingrainers],
                            [whole.ingrainer, *whole.reference_ingrainers]):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    assert extended.commitment() == whole.commitment() != before  # a new key: committed to before any claim
    extended.save(tmp_path / "extended")
    assert audit_key(WatermarkKey.load(tmp_path / "extended"), benign, num_references=2, seed=0).passed


def test_extending_a_key_refuses_what_would_not_give_its_seeds_references(saved_key, benign, embedded_splits):
    key = WatermarkKey.load(saved_key)
    with pytest.raises(ValueError, match="above the 3 references"):
        key.extend_references(3, benign_dataset=benign)
    with pytest.raises(ValueError, match="benign_dataset="):
        key.extend_references(5)
    with pytest.raises(ValueError, match="not the data the key was trained on"):
        key.extend_references(5, benign_dataset=embedded_splits["attacker"].select(range(256)))
    key.commit_queries(embedded_splits["test"].select(range(50)))
    with pytest.raises(ValueError, match="committed to its queries"):
        key.extend_references(5, benign_dataset=benign)
    with pytest.raises(ValueError, match="no trained ingrainer"):
        WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=20, seed=0).extend_references(5)
    assert len(key.reference_ingrainers) == 3  # nothing half-done
