"""Claims that hold up in a dispute: each way an expert manufactured a "VERIFIED" with 0.1, as a test that it no longer
works, and the checks a key and its queries now pass through before any verdict."""

import json

import pytest
import torch
from conftest import random_image_dataset, tiny_cnn
from trained_models import fit, independent_model, single_thread, splits, trained_key  # noqa: F401 (single_thread)

from hf_ingrain import WatermarkKey, verify
from hf_ingrain.verification import ingrain_queries


@pytest.fixture(scope="module")
def key():
    return trained_key()


# ----------------------------------------------------------------------------------------------- tailored keys
def test_an_ingrainer_cannot_start_from_a_trained_classifier():
    trained = fit(tiny_cnn(seed=9), splits()["owner"].select(range(500)), epochs=1)
    key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=10, seed=1)
    with pytest.raises(ValueError, match=r"architecture=model.config.*own randomness"):
        key.train_ingrainer(model=trained, num_steps=1, show_progress=False)
    with pytest.raises(ValueError, match="must be a config"):
        key.train_ingrainer(architecture=trained, num_steps=1, show_progress=False)
    # an architecture may be chosen: the ingrainer then starts from the key's seed, not from the trained weights
    key.train_ingrainer(architecture=trained.config, num_steps=1, learning_rate=0.0, show_progress=False)
    assert type(key.ingrainer) is type(trained)
    assert not torch.allclose(key.ingrainer.conv1.weight, trained.conv1.weight)
    again = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=10, seed=1)
    again.train_ingrainer(architecture=trained.config, num_steps=1, learning_rate=0.0, show_progress=False)
    assert torch.equal(again.ingrainer.conv1.weight, key.ingrainer.conv1.weight)  # the key's seed decides


# ----------------------------------------------------------------------------------------------- chosen queries
@pytest.mark.slow
def test_queries_chosen_after_seeing_the_suspect_are_not_the_committed_set(key):
    test = splits()["test"]
    committed_key = WatermarkKey(
        key.carriers, key.carrier_labels, key.num_labels, key.salt, key.seed, key.input_shape, key.value_range,
        key.vocab_size, key.ingrainer, key.training_info,
    )
    committed_key.commit_queries(test)
    suspect = independent_model(0)
    per_query = ingrain_queries(suspect, committed_key, test)
    chosen = test.select(torch.nonzero(per_query["runner_up"] == per_query["ingrainer_choice"]).flatten().tolist())
    honest = verify(suspect, committed_key, test)
    cherry_picked = verify(suspect, committed_key, chosen)
    print(f"honest: p = {honest.p_value:.3g}; queries picked after seeing the suspect: p = {cherry_picked.p_value:.3g}")
    assert not honest.verified and honest.committed_queries is True
    # the statistics alone are fooled (that is the attack); the result says the queries are not the committed set
    assert cherry_picked.verified and cherry_picked.committed_queries is False
    assert "NOT the committed query set" in str(cherry_picked)
    assert committed_key.commitment() != key.commitment()  # the committed set is part of what the key commits to


@pytest.mark.slow
def test_repeated_queries_are_counted_once(key):
    from datasets import concatenate_datasets

    test = splits()["test"].select(range(300))
    once = verify(independent_model(1), key, test)
    thrice = verify(independent_model(1), key, concatenate_datasets([test, test, test.select(range(100))]))
    assert (thrice.num_queries, thrice.num_agreements, thrice.num_duplicates) == (300, once.num_agreements, 400)
    assert thrice.query_digest == once.query_digest  # the same distinct examples: the same set
    shuffled = verify(independent_model(1), key, test.shuffle(seed=0))
    assert shuffled.query_digest == once.query_digest  # order does not matter


# ----------------------------------------------------------------------------------------------- keys that disagree
def _saved(key, tmp_path, name="key"):
    key.save(tmp_path / name)
    return tmp_path / name


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder: _edit_json(folder / "key.json", lambda m: m.update(num_labels=4)), "carrier_labels"),
        (lambda folder: _edit_json(folder / "key.json", lambda m: m.update(input_shape=[1, 32, 32])), "input_shape"),
        (lambda folder: _edit_json(folder / "key.json", lambda m: m.update(salt="00" * 16)), "salt"),
        (lambda folder: _edit_json(folder / "key.json", lambda m: m["training_info"].update(carrier_accuracy=1.0)),
         "carrier_accuracy"),
        (lambda folder: _nan_weights(folder / "ingrainer" / "model.safetensors"), "NaN"),
    ],
    ids=["labels out of range", "shape", "salt length", "carrier accuracy", "non-finite weights"],
)
def test_a_key_whose_files_disagree_is_refused_on_load(damage, message, small_key, tmp_path):
    reference = WatermarkKey(
        small_key.carriers, small_key.carrier_labels, small_key.num_labels, small_key.salt, small_key.seed,
        small_key.input_shape, small_key.value_range, small_key.vocab_size, small_key.ingrainer,
        {**small_key.training_info, "carrier_accuracy": 0.9},
    )
    folder = _saved(reference, tmp_path)
    WatermarkKey.load(folder)  # intact: loads
    if message == "carrier_accuracy":  # an ingrainer swapped for one that fits fewer carriers than recorded
        tiny_cnn(seed=12).save_pretrained(folder / "ingrainer")
    damage(folder)
    with pytest.raises(ValueError, match=message):
        WatermarkKey.load(folder)


def _nan_weights(path):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(path))


def test_loading_a_key_never_runs_its_code(small_key, tmp_path):
    folder = _saved(small_key, tmp_path)
    marker = tmp_path / "code_ran"
    _edit_json(folder / "ingrainer" / "config.json", lambda c: c.update(
        auto_map={"AutoModelForImageClassification": "modeling_evil.EvilModel"}
    ))
    (folder / "ingrainer" / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    loaded = WatermarkKey.load(folder)  # the registered architecture is used; the file is never imported
    assert not marker.exists() and type(loaded.ingrainer) is type(small_key.ingrainer)


# ----------------------------------------------------------------------------------------------- bad inputs
def test_bad_queries_are_refused_before_any_query(small_key):
    def never_called(batch):
        raise AssertionError("queried")

    data = random_image_dataset(32)
    with pytest.raises(ValueError, match=r"labels from .* outside the key's 10 classes"):
        verify(never_called, small_key, data.map(lambda row: {"labels": row["labels"] + 10}))
    with pytest.raises(ValueError, match=r"pixel values from -1 .* values in \[0, 1\]"):
        verify(never_called, small_key, data.map(lambda row: {"pixel_values": row["pixel_values"] * 2 - 1}))


def test_a_suspect_that_answers_nan_is_an_error_not_a_verdict(small_key):
    data = random_image_dataset(32)
    model = tiny_cnn(seed=3)

    def sometimes_nan(batch):
        logits = model(pixel_values=batch["pixel_values"]).logits.detach()
        logits[::4] = float("nan")
        return logits

    with pytest.raises(ValueError, match="no finite score for 8 of 32 queries"):
        verify(sometimes_nan, small_key, data)
    broken = tiny_cnn(seed=3)
    with torch.no_grad():
        broken.classifier.bias[0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        verify(broken, small_key, data)
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        verify(broken, small_key, protocol="carriers")
