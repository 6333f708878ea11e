import os

import pytest
import torch

from hf_ingrain import WatermarkKey

from conftest import NUM_LABELS, random_image_dataset


def test_generate_is_reproducible_from_its_seed_and_random_without_one():
    a = WatermarkKey.generate(num_labels=NUM_LABELS, input_shape=(1, 8, 8), num_carriers=5, seed=3)
    b = WatermarkKey.generate(num_labels=NUM_LABELS, input_shape=(1, 8, 8), num_carriers=5, seed=3)
    c = WatermarkKey.generate(num_labels=NUM_LABELS, input_shape=(1, 8, 8), num_carriers=5)
    assert torch.equal(a.carriers, b.carriers) and torch.equal(a.carrier_labels, b.carrier_labels)
    # the salt comes from the operating system, never from the seed: whoever knows the seed cannot recompute the
    # commitment of a key made from it
    assert a.salt != b.salt and a.commitment() != b.commitment()
    assert not torch.equal(a.carriers, c.carriers)
    assert a.carriers.shape == (5, 1, 8, 8) and a.carrier_labels.max() < NUM_LABELS


def test_carriers_respect_the_value_range_and_text_keys_draw_token_ids():
    key = WatermarkKey.generate(num_labels=4, input_shape=(3, 4, 4), num_carriers=50, seed=0, value_range=(-1.0, 1.0))
    assert key.carriers.min() >= -1 and key.carriers.max() <= 1 and key.carriers.min() < -0.5
    text = WatermarkKey.generate(num_labels=4, vocab_size=30, num_carriers=7, seed=0, sequence_length=5)
    assert text.carriers.shape == (7, 5) and text.carriers.dtype == torch.long and text.carriers.max() < 30


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_labels=1, input_shape=(1, 8, 8)), "num_labels"),
        (dict(num_labels=10, input_shape=(8, 8)), "input_shape"),
        (dict(num_labels=10), "exactly one"),
        (dict(num_labels=10, input_shape=(1, 8, 8), num_carriers=0), "num_carriers"),
        (dict(num_labels=10, input_shape=(1, 8, 8), value_range=(1.0, 0.0)), "value_range"),
    ],
)
def test_generate_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WatermarkKey.generate(**kwargs)


def test_train_ingrainer_fits_the_carriers(small_key):
    assert small_key.training_info["carrier_accuracy"] == 1.0
    assert all(not p.requires_grad for p in small_key.ingrainer.parameters())


def test_train_ingrainer_rejects_benign_data_of_another_shape():
    key = WatermarkKey.generate(num_labels=NUM_LABELS, input_shape=(1, 28, 28), num_carriers=5, seed=0)
    with pytest.raises(ValueError, match="shape"):
        key.train_ingrainer(benign_dataset=random_image_dataset(8, shape=(3, 28, 28)), num_steps=1, show_progress=False)


def test_save_load_round_trip_is_bit_identical(small_key, tmp_path):
    small_key.save(tmp_path / "key")
    loaded = WatermarkKey.load(tmp_path / "key")
    assert torch.equal(loaded.carriers, small_key.carriers)
    assert torch.equal(loaded.carrier_labels, small_key.carrier_labels)
    for (name, a), (_, b) in zip(small_key.ingrainer.state_dict().items(), loaded.ingrainer.state_dict().items()):
        assert torch.equal(a, b), name
    assert loaded.commitment() == small_key.commitment()
    batch = {"pixel_values": small_key.carriers}
    assert torch.equal(loaded.ingrainer_logits(batch), small_key.ingrainer_logits(batch))


def test_any_changed_byte_changes_the_commitment(small_key, tmp_path):
    reference = small_key.commitment()
    assert len(reference) == 64 and int(reference, 16) >= 0
    small_key.save(tmp_path / "key")
    for mutate in (
        lambda k: k.carriers.view(-1).__setitem__(0, k.carriers.view(-1)[0] + 1e-6),
        lambda k: k.carrier_labels.__setitem__(0, (k.carrier_labels[0] + 1) % NUM_LABELS),
        lambda k: next(k.ingrainer.parameters()).view(-1).__setitem__(0, 0.123),
        lambda k: setattr(k, "salt", b"\0" * 32),
    ):
        key = WatermarkKey.load(tmp_path / "key")
        mutate(key)
        assert key.commitment() != reference


def test_save_refuses_a_non_empty_folder_and_leaves_nothing_half_written(small_key, tmp_path):
    target = tmp_path / "key"
    target.mkdir()
    (target / "other.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        small_key.save(target)
    assert sorted(os.listdir(tmp_path)) == ["key"]
    with pytest.raises(ValueError, match="key.json"):
        WatermarkKey.load(tmp_path / "missing")


def test_repr_does_not_reveal_the_seed(small_key):
    text = repr(small_key)
    assert "seed" not in text and small_key.commitment()[:12] in text


# ----------------------------------------------------------------------------------------------- one base class
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def test_keys_saved_by_version_0_1_load_with_their_published_commitment():
    """A commitment published with a model under hf_ingrain 0.1 must keep matching the key that made it."""
    import json

    from hf_ingrain.watermarks import AdiKey, load_key

    with open(os.path.join(FIXTURES, "format_1_commitments.json")) as f:
        published = json.load(f)
    key = WatermarkKey.load(os.path.join(FIXTURES, "key_format_1"))
    adi = load_key(os.path.join(FIXTURES, "adi_key_format_1"))
    assert isinstance(adi, AdiKey) and key.ingrainer is not None and key.num_labels == 4
    assert key.commitment() == published["ingrain"] and adi.commitment() == published["adi"]
    key.carriers[0, 0, 0, 0] += 1e-3  # and the old rule still binds every byte
    assert key.commitment() != published["ingrain"]


def test_every_key_saves_loads_and_commits_through_one_base_class(tmp_path):
    from hf_ingrain.keys import SecretKey
    from hf_ingrain.watermarks import AdiKey, SchemeKey, UchidaKey, ZhangKey

    for key_class in (WatermarkKey, AdiKey, UchidaKey, ZhangKey):
        assert issubclass(key_class, SecretKey)
        for method in ("save", "load", "commitment"):  # inherited, never copied
            assert getattr(key_class, method).__qualname__.startswith("SecretKey."), (key_class, method)

    class ScalarKey(SchemeKey):  # a scheme whose secret includes a 0-d tensor (the copy in 0.1 crashed on it)
        scheme = "scalar_test"

        def __init__(self, value, salt):
            self.value, self.salt = value, salt

        def _tensors(self):
            return {"value": self.value}

        def _metadata(self):
            return {}

        @classmethod
        def _from_saved(cls, tensors, metadata, salt, models=None):
            return cls(tensors["value"], salt)

    key = ScalarKey(torch.tensor(3.5), b"\1" * 32)
    key.save(tmp_path / "scalar")
    loaded = SecretKey.load(tmp_path / "scalar")
    assert isinstance(loaded, ScalarKey) and loaded.commitment() == key.commitment()
    assert ScalarKey(torch.tensor(3.25), b"\1" * 32).commitment() != key.commitment()


def test_an_edited_ingrainer_config_changes_the_commitment(small_key, tmp_path):
    """The commitment covers what decides the key's choices: an ingrainer config flag changes them (0.1 missed it)."""
    import json

    small_key.save(tmp_path / "key")
    path = tmp_path / "key" / "ingrainer" / "config.json"
    config = json.loads(path.read_text())
    config["standardize_inputs"] = True
    path.write_text(json.dumps(config))
    edited = WatermarkKey.load(tmp_path / "key")
    assert edited.commitment() != small_key.commitment()
    batch = {"pixel_values": torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))}
    assert not torch.equal(edited.ingrainer_logits(batch).argmax(-1), small_key.ingrainer_logits(batch).argmax(-1))


def test_training_the_ingrainer_is_seeded_by_the_key_and_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    keys = []
    for noise in (0, 1):
        torch.manual_seed(123)
        torch.rand(noise)  # a caller whose random state differs
        key = WatermarkKey.generate(num_labels=NUM_LABELS, input_shape=(1, 8, 8), num_carriers=4, seed=5)
        key.train_ingrainer(num_steps=3, show_progress=False, num_reference_keys=0)
        keys.append(key)
        if noise == 0:
            assert torch.equal(torch.rand(3), expected_next)  # untouched by the training
    for (name, weight), (_, other) in zip(keys[0].ingrainer.state_dict().items(), keys[1].ingrainer.state_dict().items()):
        assert torch.equal(weight, other), name  # the same ingrainer whatever the caller did before


def test_text_carriers_have_random_lengths_a_mask_and_no_special_tokens(tmp_path):
    preprocessing = {"pad_token_id": 0, "special_token_ids": [0, 1, 2], "prefix_ids": [1], "suffix_ids": [2]}
    key = WatermarkKey.generate(
        num_labels=4, vocab_size=30, num_carriers=50, seed=0, sequence_length=12, preprocessing=preprocessing
    )
    mask = key.carrier_attention_mask
    assert mask.shape == key.carriers.shape == (50, 12)
    lengths = mask.sum(-1)
    assert lengths.min() < lengths.max() and lengths.min() >= 2 + 2  # [CLS] + at least a quarter of 10 + [SEP]
    for ids, length in zip(key.carriers, lengths.tolist()):
        assert ids[0] == 1 and ids[length - 1] == 2 and (ids[length:] == 0).all()
        assert not set(ids[1 : length - 1].tolist()) & {0, 1, 2}
    key.save(tmp_path / "key")
    loaded = WatermarkKey.load(tmp_path / "key")
    assert torch.equal(loaded.carrier_attention_mask, mask) and loaded.preprocessing == preprocessing
    assert loaded.commitment() == key.commitment()
    loaded.preprocessing = {**preprocessing, "pad_token_id": 3}  # the recorded preprocessing is part of the key
    assert loaded.commitment() != key.commitment()


def _padded_text(num_examples=1024, length=24, vocab_size=200, num_labels=10, seed=0):
    """Random token ids of 3 to 12 tokens padded to 24 (69% padding), with the mask a tokenizer gives them."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, length // 2 + 1, (num_examples,), generator=generator)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids = torch.randint(1, vocab_size, (num_examples, length), generator=generator) * mask
    labels = torch.randint(0, num_labels, (num_examples,), generator=generator)
    return ids, mask, labels


def test_a_text_ingrainer_is_spread_over_its_data_as_it_is_queried_with_the_mask():
    # IngrainTrainer and verify() query the ingrainer with the attention mask; 0.1 trained it on the ids alone. Its
    # choices are spread over the data it was trained on, so they are spread as queried only if it saw the mask.
    from datasets import Dataset

    from hf_ingrain.verification.statistics import ingrain_null_rate
    from hf_ingrain.suspects import forward_logits

    ids, mask, labels = _padded_text()
    data = Dataset.from_dict({"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "labels": labels.numpy()})
    data = data.with_format("torch")

    def ingrainer(train_on):
        key = WatermarkKey.generate(num_labels=10, vocab_size=200, num_carriers=50, seed=0, sequence_length=24)
        key.train_ingrainer(benign_dataset=train_on, num_steps=300, show_progress=False, num_reference_keys=0)
        return key.ingrainer

    def null_rate(model, query):
        return ingrain_null_rate(forward_logits(model, query), labels, labels)[0]

    masked, ids_only = ingrainer(data), ingrainer(data.remove_columns("attention_mask"))
    with_mask = null_rate(masked, {"input_ids": ids, "attention_mask": mask})
    ids_only_as_trained = null_rate(ids_only, {"input_ids": ids})
    ids_only_as_queried = null_rate(ids_only, {"input_ids": ids, "attention_mask": mask})
    # Measured with key seeds 0, 1, 2: trained with the mask and queried with it 0.164 / 0.159 / 0.166; trained on
    # the ids alone, 0.166 / 0.177 / 0.173 queried the same way, 0.220 / 0.197 / 0.218 queried with the mask (the
    # uniform rate is 1/9 = 0.111). The spread is kept only where training and queries agree.
    assert with_mask <= ids_only_as_trained + 0.01
    assert ids_only_as_queried >= ids_only_as_trained + 0.03


def test_a_key_keeps_its_commitment_when_its_ingrainers_config_gained_use_cache(tmp_path):
    # A Trainer sets `use_cache` on the config of a model it trained; saving and loading did not keep it, so a key
    # whose ingrainer had been through a Trainer changed its commitment on load (found by the precedence tests).
    key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=5, seed=0)
    key.train_ingrainer(num_steps=5, show_progress=False, num_reference_keys=0)
    key.ingrainer.config.use_cache = False
    key.save(tmp_path / "key")
    assert WatermarkKey.load(tmp_path / "key").commitment() == key.commitment()
