"""A key's ingrainers trained and queried as one batched model (`hf_ingrain.keys.batched`): each member is the same
function of its seed, the recipe and the benign data however it is run."""

import pytest
import torch
from conftest import NUM_LABELS, random_image_dataset, random_text_dataset

from hf_ingrain import WatermarkKey
from hf_ingrain.data.preparation import prepare_dataset
from hf_ingrain.keys.batched import member_logits, stack_parameters, stacked_logits
from hf_ingrain.keys.ingrainer import (
    benign_tensors, fit_ingrainer, fit_ingrainers, initial_ingrainer, reference_keys,
)
from hf_ingrain.keys.querying import query_ingrainers, remembered_scores
from hf_ingrain.losses import ingrainer_spread_loss, ingrainer_spread_loss_per_member
from hf_ingrain.suspects import collect_scores

STEPS = 12


def _image_key(seed=5, side=8):
    return WatermarkKey.generate(num_labels=NUM_LABELS, input_shape=(1, side, side), num_carriers=6, seed=seed)


def _text_key(seed=5):
    return WatermarkKey.generate(num_labels=NUM_LABELS, vocab_size=100, num_carriers=6, seed=seed, sequence_length=12)


def _options(key, data, architecture=None, steps=STEPS, logit_std=2.0):
    benign_inputs, benign_labels = benign_tensors(key, prepare_dataset(data, key, None))
    return (architecture, benign_inputs, benign_labels, steps, 1e-3, 1.0, 0.3, logit_std, 32)


def _assert_same_weights(models, others):
    assert len(models) == len(others)
    for model, other in zip(models, others):
        assert type(model) is type(other)
        for name, weight in other.state_dict().items():
            assert torch.equal(model.state_dict()[name], weight), name


@pytest.fixture
def two_threads():
    """Two intra-op threads for the test, as on a 2-core machine (conftest runs tests on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_batched_members_equal_the_sequential_ones_bit_for_bit(modality, two_threads):
    # The batched key on two worker threads against today's sequential path (`fit_ingrainer`, each key's module
    # trained alone) on one thread: every member, every weight, bit for bit.
    if modality == "image":
        key, data = _image_key(), random_image_dataset(64, shape=(1, 8, 8))
    else:
        key, data = _text_key(), random_text_dataset(64)
    key.train_ingrainer(benign_dataset=data, num_steps=STEPS, batch_size=32, num_reference_keys=3, show_progress=False)
    assert torch.get_num_threads() == 2  # restored after the worker threads' one each
    options = _options(key, data)
    torch.set_num_threads(1)
    sequential = [fit_ingrainer(member, *options) for member in [key, *reference_keys(key, 3)]]
    _assert_same_weights([key.ingrainer, *key.reference_ingrainers], [model for model, _, _ in sequential])
    assert key.training_info["carrier_accuracy"] == sequential[0][1]
    assert key.training_info["logit_scale"] == sequential[0][2]
    assert all(not p.requires_grad for m in key.reference_ingrainers for p in m.parameters())


def test_a_member_does_not_depend_on_the_members_trained_with_it_nor_on_the_threads(two_threads):
    key, data = _image_key(seed=9), random_image_dataset(64, shape=(1, 8, 8))
    options = _options(key, data)
    members = [key, *reference_keys(key, 4)]
    together = fit_ingrainers(members, options)  # 5 members on 2 worker threads
    torch.set_num_threads(1)
    alone = [fit_ingrainers([member], options)[0] for member in reversed(members)][::-1]
    _assert_same_weights([m for m, _, _ in together], [m for m, _, _ in alone])
    assert [entry[1:] for entry in together] == [entry[1:] for entry in alone]


def test_a_saved_key_is_re_derived_from_its_seed_and_recipe_bit_for_bit(two_threads, tmp_path):
    key, data = _image_key(seed=11), random_image_dataset(64, shape=(1, 8, 8))
    key.train_ingrainer(benign_dataset=data, num_steps=STEPS, learning_rate=2e-3, batch_size=32, logit_std=1.5,
                        num_reference_keys=3, show_progress=False)
    assert key.training_info["recipe"] == {"architecture": "default", "learning_rate": 2e-3, "spread_weight": 1.0,
                                           "sharpness_weight": 0.3, "logit_std": 1.5, "batch_size": 32}
    key.save(tmp_path / "key")
    loaded = WatermarkKey.load(tmp_path / "key")
    torch.set_num_threads(1)  # another thread count than the training's: the members do not depend on it
    _assert_same_weights([loaded.rederive_ingrainer(data)], [loaded.ingrainer])
    _assert_same_weights([loaded.rederive_ingrainer(data, reference=2)], [loaded.reference_ingrainers[2]])
    assert not torch.equal(loaded.rederive_ingrainer(data, reference=1).classifier.weight,
                           loaded.reference_ingrainers[2].classifier.weight)
    with pytest.raises(ValueError, match="no reference ingrainer 3"):
        loaded.rederive_ingrainer(data, reference=3)
    # without the key's data, or with other data, it would train another model: refused, naming the data to pass
    with pytest.raises(ValueError, match="pass it as `benign_dataset=`"):
        loaded.rederive_ingrainer()
    with pytest.raises(ValueError, match="not the data the key was trained on"):
        loaded.rederive_ingrainer(random_image_dataset(64, shape=(1, 8, 8), seed=1))


def test_an_architecture_that_cannot_batch_trains_member_after_member():
    # A transformers ResNet is trained by `fit_ingrainer`, one member after another, as before.
    from transformers import ResNetConfig

    architecture = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                layer_type="basic", num_labels=NUM_LABELS)
    key, data = _image_key(seed=3, side=16), random_image_dataset(32, shape=(1, 16, 16))
    key.train_ingrainer(benign_dataset=data, architecture=architecture, num_steps=3, batch_size=32,
                        num_reference_keys=1, show_progress=False)
    assert type(key.ingrainer).__name__ == "ResNetForImageClassification"
    options = _options(key, data, architecture=architecture, steps=3)
    expected = [fit_ingrainer(member, *options)[0] for member in [key, *reference_keys(key, 1)]]
    _assert_same_weights([key.ingrainer, *key.reference_ingrainers], expected)
    assert key.training_info["recipe"]["architecture"] == "config"
    _assert_same_weights([key.rederive_ingrainer(data, reference=0)], key.reference_ingrainers)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_the_stacked_model_computes_each_members_logits_loss_and_gradient(modality):
    # The stacked pass (the GPU's) against each member's own, on the same parameters and inputs: equal up to float
    # rounding (a grouped convolution and a batched product sum in another order than the plain ones).
    if modality == "image":
        key = _image_key(seed=2, side=28)
        inputs = {"pixel_values": torch.rand(3, 8, 1, 28, 28, generator=torch.Generator().manual_seed(0))}
    else:
        key = _text_key(seed=2)
        generator = torch.Generator().manual_seed(0)
        inputs = {"input_ids": torch.randint(0, 100, (3, 8, 12), generator=generator),
                  "attention_mask": (torch.rand(3, 8, 12, generator=generator) > 0.3).long()}
    models = [initial_ingrainer(member, None) for member in [key, *reference_keys(key, 2)]]
    params = {name: value.requires_grad_() for name, value in stack_parameters(models).items()}
    labels = torch.randint(0, NUM_LABELS, (3, 8), generator=torch.Generator().manual_seed(1))
    logits = stacked_logits(models[0], params, inputs, shared=False)
    losses = ingrainer_spread_loss_per_member(logits, labels, NUM_LABELS, 0.3)
    losses.sum().backward()
    for index, model in enumerate(models):
        own = member_logits(model, {name: value[index] for name, value in inputs.items()})
        loss = ingrainer_spread_loss(own, labels[index], NUM_LABELS, 0.3)
        loss.backward()
        torch.testing.assert_close(logits[index], own, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(losses[index], loss, rtol=1e-5, atol=1e-6)
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(params[name].grad[index], parameter.grad, rtol=1e-4, atol=1e-6)
        shared = stacked_logits(models[0], params, {name: value[0] for name, value in inputs.items()}, shared=True)
        mine = member_logits(model, {name: value[0] for name, value in inputs.items()})
        torch.testing.assert_close(shared[index], mine, rtol=1e-5, atol=1e-6)


def test_stacked_training_follows_the_sequential_one():
    # The stacked loop (the GPU's, run here on the CPU) trains each member as alone, up to float rounding. Adam moves
    # a weight by about the learning rate per step whatever the size of its gradient, so a gradient that is zero up to
    # rounding may move it either way: the bound is 2 x learning rate x steps per weight, and the logits on the
    # carriers must agree far closer than the difference between two members.
    key, data = _image_key(seed=4), random_image_dataset(64, shape=(1, 8, 8))
    options = _options(key, data, steps=5, logit_std=None)
    members = [key, *reference_keys(key, 2)]
    stacked = fit_ingrainers(members, options, stacked=True)
    alone = fit_ingrainers(members, options, stacked=False)
    carriers = {"pixel_values": key.carriers}
    for (model, accuracy, _), (other, other_accuracy, _) in zip(stacked, alone):
        for name, weight in other.state_dict().items():
            torch.testing.assert_close(model.state_dict()[name], weight, rtol=0, atol=2 * 1e-3 * 5)
        assert accuracy == other_accuracy
        with torch.no_grad():
            torch.testing.assert_close(model(**carriers).logits, other(**carriers).logits, rtol=0, atol=1e-3)
    with torch.no_grad():
        assert (stacked[0][0](**carriers).logits - stacked[1][0](**carriers).logits).abs().max() > 1e-2


@pytest.mark.parametrize("stacked", [False, True])
def test_query_ingrainers_reads_the_queries_once_and_answers_for_every_member(stacked, monkeypatch):
    key, data = _image_key(seed=6, side=28), random_image_dataset(70)
    key.train_ingrainer(benign_dataset=data, num_steps=3, num_reference_keys=2, show_progress=False)
    models = [key.ingrainer, *key.reference_ingrainers]
    before = [{name: weight.clone() for name, weight in model.state_dict().items()} for model in models]
    from hf_ingrain.keys import querying

    passes = []
    real_stacked = querying.stacked_logits
    monkeypatch.setattr(querying, "stacked_logits", lambda *args, **kwargs: passes.append(1) or real_stacked(
        *args, **kwargs))
    if stacked:  # the GPU's path, on the CPU
        monkeypatch.setattr(querying, "stacks_on", lambda device: True)
    scores = query_ingrainers(models, data, batch_size=32)
    assert len(passes) == (3 if stacked else 0)  # one stacked pass a batch of 32, on the path asked for
    assert len(scores) == 3 and all(score.shape == (70, NUM_LABELS) for score in scores)
    for model, score, weights in zip(models, scores, before):
        torch.testing.assert_close(score, collect_scores(model, data)[0], rtol=1e-5, atol=1e-5)
        assert all(torch.equal(model.state_dict()[name], weight) for name, weight in weights.items())
    ingrainer, references = key.ingrainer_scores(data)
    torch.testing.assert_close(ingrainer, scores[0], rtol=1e-5, atol=1e-5)
    assert len(references) == 2


def test_query_ingrainers_on_worker_threads_equals_each_member_alone_on_one_thread(two_threads):
    # On a CPU the members answer on worker threads of one intra-op thread each: the logits are each member's own
    # forward on one thread, bit for bit, whatever the number of threads (and gradients are not recorded there).
    key, data = _image_key(seed=6, side=28), random_image_dataset(70)
    key.train_ingrainer(benign_dataset=data, num_steps=3, num_reference_keys=3, show_progress=False)
    models = [key.ingrainer, *key.reference_ingrainers]
    on_two = query_ingrainers(models, data, batch_size=32)
    assert torch.get_num_threads() == 2 and not any(score.requires_grad for score in on_two)
    torch.set_num_threads(1)
    on_one = query_ingrainers(models, data, batch_size=32)
    pixels = torch.stack([torch.as_tensor(row) for row in data.with_format("torch")["pixel_values"]])
    with torch.no_grad():
        alone = [torch.cat([member_logits(model, {"pixel_values": pixels[i:i + 32]}) for i in range(0, 70, 32)])
                 for model in models]
    for two, one, single in zip(on_two, on_one, alone):
        assert torch.equal(two, one) and torch.equal(two, single)


def test_verify_queries_the_keys_ingrainers_once_per_query_set_while_their_weights_stay(monkeypatch):
    # Verifying many suspects on the same queries: the key's ingrainers answer the first time only; a change to any
    # of their weights (in place, or through `.data`, which torch's version counter misses) is seen, and another
    # query set is queried anew.
    from hf_ingrain import verify

    key, data = _image_key(seed=6, side=28), random_image_dataset(90)
    key.train_ingrainer(benign_dataset=data, num_steps=3, num_reference_keys=2, show_progress=False)
    calls = []
    real = query_ingrainers
    monkeypatch.setattr("hf_ingrain.keys.watermark_key.query_ingrainers",  # what key.ingrainer_scores calls
                        lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    suspect = key.ingrainer
    first = verify(suspect, key, data)
    assert verify(suspect, key, data).to_dict() == first.to_dict() and len(calls) == 1
    verify(suspect, key, data.select(range(60)))
    assert len(calls) == 2
    before = remembered_scores(key, data, 256, "d")[1][1]
    with torch.no_grad():
        key.reference_ingrainers[1].classifier.bias.data[0] += 5.0  # through `.data`: the version counter stays
    changed = remembered_scores(key, data, 256, "d")[1][1]
    assert len(calls) == 4 and torch.allclose(changed[:, 0], before[:, 0] + 5.0)
    with torch.no_grad():
        key.reference_ingrainers[1].classifier.bias[0] -= 5.0
    verify(suspect, key, data)
    assert len(calls) == 5  # the memo keeps the last two (query set, weights): both are "d"'s now


def test_num_proc_trains_an_architecture_that_cannot_batch_in_processes_as_in_one():
    # The tests run on one thread (conftest), so each process gets one too; every ingrainer depends on its seed
    # alone, so the order in which the processes finish cannot change the key or its references.
    from transformers import ResNetConfig

    architecture = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                layer_type="basic", num_labels=NUM_LABELS)
    benign = random_image_dataset(32, shape=(1, 16, 16))
    keys = []
    for num_proc in (None, 2):
        key = _image_key(seed=5, side=16)
        key.train_ingrainer(benign_dataset=benign, architecture=architecture, num_steps=3, batch_size=32,
                            num_reference_keys=2, show_progress=False, num_proc=num_proc)
        keys.append(key)
    _assert_same_weights(*([key.ingrainer, *key.reference_ingrainers] for key in keys))
    assert keys[0].training_info == keys[1].training_info
    with pytest.raises(ValueError, match="num_proc"):
        keys[0].train_ingrainer(num_steps=1, show_progress=False, num_proc=0)


def test_the_committed_queries_scores_are_saved_with_the_key_and_used_only_for_its_weights(monkeypatch, tmp_path):
    # Committing queries the key's ingrainers once; the key folder keeps their answers, so a verification on the
    # committed queries in a later session queries no ingrainer and gives the same verdict. Another query set, or a
    # changed weight, queries them again; the file is outside the commitment (it is derived from the key).
    from safetensors.torch import load_file, save_file

    from hf_ingrain import verify
    from hf_ingrain.keys.querying import SCORES_FILE, forget_scores

    key, data = _image_key(seed=6, side=28), random_image_dataset(90)
    key.train_ingrainer(benign_dataset=data, num_steps=3, num_reference_keys=2, show_progress=False)
    commitment_before = key.commitment()
    key.commit_queries(data)
    suspect = key.reference_ingrainers[0]
    fresh = verify(suspect, key, data)
    key.save(tmp_path / "key")
    assert (tmp_path / "key" / SCORES_FILE).is_file()
    calls = []
    real = query_ingrainers
    monkeypatch.setattr("hf_ingrain.keys.watermark_key.query_ingrainers",
                        lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    loaded = WatermarkKey.load(tmp_path / "key")
    assert loaded.commitment() == key.commitment() and key.commitment() != commitment_before  # committed queries only
    assert verify(suspect, loaded, data).to_dict() == fresh.to_dict() and not calls
    verify(suspect, loaded, data.select(range(60)))
    assert len(calls) == 1
    with torch.no_grad():
        loaded.reference_ingrainers[1].classifier.bias[0] += 1.0
    forget_scores(loaded, saved=False)
    verify(suspect, loaded, data)
    assert len(calls) == 2  # the saved scores are not these weights' answers
    # a file written by hand is read as the owner's own (a claim never reads it: test_hub): scores swapped for others
    path = tmp_path / "key" / SCORES_FILE
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    scores = load_file(str(path))["scores"]
    save_file({"scores": -scores}, str(path), metadata=metadata)
    digest = key.committed_queries["ordered_digest"]
    first, _ = remembered_scores(WatermarkKey.load(tmp_path / "key"), data, 256, digest)
    assert torch.equal(first, -scores[0]) and len(calls) == 2
    path.write_bytes(b"damaged")  # ignored, with a warning: the scores are computed again
    assert verify(suspect, WatermarkKey.load(tmp_path / "key"), data).to_dict() == fresh.to_dict()
    assert len(calls) == 3
