import os

import pytest
import torch
from conftest import random_image_dataset, tiny_cnn, training_args
from trained_models import accuracy, cnn, one_thread, single_thread, splits  # noqa: F401 (single_thread: autouse)
from transformers import TrainingArguments

from hf_ingrain.watermarks import (
    AdiKey,
    UchidaConfig,
    UchidaKey,
    UchidaTrainer,
    ZhangKey,
    embed_trigger_set,
    extract_bits,
    load_key,
    mix_trigger_set,
    signature_loss,
    verify_trigger_set,
    verify_uchida,
)

ZHANG_KINDS = ("content", "noise", "unrelated")


@pytest.fixture(scope="module")
def owner(embedded_splits):
    return embedded_splits["owner"].select(range(300))  # enough owner images for 30 triggers, quick to read


def all_keys(owner):
    keys = {kind: ZhangKey.generate(owner, kind=kind, num_triggers=20, seed=1) for kind in ZHANG_KINDS}
    keys["adi"] = AdiKey.generate(10, (1, 28, 28), num_triggers=20, seed=1)
    keys["uchida"] = UchidaKey.generate(tiny_cnn(), num_bits=16, seed=1)
    return keys


# ----------------------------------------------------------------------------------------------- keys
def test_trigger_sets_have_the_scheme_shapes_and_labels(owner):
    owner_pixels, owner_labels = owner[:]["pixel_values"], owner[:]["labels"]
    for kind in ZHANG_KINDS:
        key = ZhangKey.generate(owner, kind=kind, num_triggers=30, seed=2)
        target = key.params["target_label"]
        assert key.inputs.shape == (30, 1, 28, 28) and key.inputs.min() >= 0 and key.inputs.max() <= 1, kind
        assert (key.labels == target).all(), kind
        if kind != "unrelated":  # made from owner images of other classes, and they differ only by the trigger
            sources = [(owner_pixels == c).flatten(1).all(1).nonzero() for c in key.controls[:5]]
            assert all(len(s) and (owner_labels[s[0]] != target).all() for s in sources), kind
            assert torch.equal(key.apply(key.controls), key.inputs), kind
    adi = AdiKey.generate(10, (3, 16, 16), num_triggers=200, seed=2)
    assert adi.inputs.shape == (200, 3, 16, 16) and adi.inputs.std() > 0.1
    assert len(adi.labels.unique()) == 10  # random labels over every class


def test_unrelated_triggers_come_from_another_distribution(owner):
    digits = owner[:]["pixel_values"]
    photos = ZhangKey.generate(owner, kind="unrelated", num_triggers=50, seed=0).inputs
    # MNIST is mostly black background: ~80% of pixels near 0; photo crops are mid-grey textures
    assert (digits < 0.05).float().mean() > 0.7 and (photos < 0.05).float().mean() < 0.2


def test_keys_are_reproducible_from_their_seed_but_their_commitments_are_not(owner):
    a, b = all_keys(owner), all_keys(owner)
    for name in a:
        for tensor_name, tensor in a[name]._tensors().items():  # the same draws...
            assert torch.equal(tensor, b[name]._tensors()[tensor_name]), (name, tensor_name)
        assert a[name].commitment() != b[name].commitment(), name  # ...and a salt from the OS: another commitment
    unseeded = ZhangKey.generate(owner, num_triggers=20)
    assert not torch.equal(unseeded.inputs, a["content"].inputs)


def test_save_load_round_trip_and_commitment(owner, tmp_path):
    for name, key in all_keys(owner).items():
        key.save(tmp_path / name)
        loaded = load_key(tmp_path / name)
        assert type(loaded) is type(key) and loaded.commitment() == key.commitment(), name
        for tensor_name, tensor in key._tensors().items():
            assert torch.equal(tensor, loaded._tensors()[tensor_name]), (name, tensor_name)
        assert oct(os.stat(tmp_path / name).st_mode)[-3:] == "700"
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".key-")]  # no staging folder left behind
    with pytest.raises(ValueError, match="not a 'adi' key"):
        AdiKey.load(tmp_path / "uchida")
    with pytest.raises(ValueError, match="not empty"):
        key.save(tmp_path / "uchida")


def test_any_changed_byte_changes_the_commitment(owner):
    for name, key in all_keys(owner).items():
        before = key.commitment()
        for tensor in key._tensors().values():
            flat, saved = tensor.view(-1), tensor.view(-1)[0].clone()
            flat[0] += 1
            assert key.commitment() != before, name
            flat[0] = saved
            assert key.commitment() == before, name
        key.salt = bytes([key.salt[0] ^ 1]) + key.salt[1:]
        assert key.commitment() != before, name
    assert "seed" not in repr(key) and key.commitment()[:12] in repr(key)


def test_generate_rejects_bad_input(owner):
    for kwargs, message in [
        (dict(kind="stripes"), "kind"),
        (dict(target_label=10), "target_label"),
        (dict(kind="noise", noise_std=0), "noise_std"),
        (dict(stamp_size=(30, 5)), "stamp_size"),
    ]:
        with pytest.raises(ValueError, match=message):
            ZhangKey.generate(owner, **kwargs)
    with pytest.raises(ValueError, match="input_shape"):
        AdiKey.generate(10, (2, 28, 28))
    with pytest.raises(ValueError, match="num_bits"):
        UchidaKey.generate(tiny_cnn(), "conv1.weight", num_bits=10)  # conv1 averages to 1*3*3 = 9 values
    with pytest.raises(ValueError, match="no parameter"):
        UchidaKey.generate(tiny_cnn(), "conv9.weight")


# ----------------------------------------------------------------------------------------------- embedding helpers
def test_mix_trigger_set_appends_repeated_triggers(embedded_splits):
    key = AdiKey.generate(10, num_triggers=20, seed=0)
    owner = embedded_splits["owner"].select(range(100))
    mixed = mix_trigger_set(owner, key, repeats=3)
    assert len(mixed) == 160 and mixed.features == owner.features
    assert torch.equal(mixed[100:120]["pixel_values"], key.inputs) and torch.equal(
        mixed[140:160]["labels"], key.labels
    )
    assert len(mix_trigger_set(owner, key)) == 100 + 20 * 5  # default: as many trigger copies as owner images
    with pytest.raises(ValueError, match="shape"):
        mix_trigger_set(random_image_dataset(8, shape=(1, 16, 16)), key)


def test_verify_trigger_set_works_with_labels_only_and_controls_stop_a_constant_model(owner):
    key = ZhangKey.generate(owner, kind="noise", num_triggers=50, target_label=3, seed=0)
    oracle = verify_trigger_set(lambda batch: torch.full((len(batch["pixel_values"]),), 3), key)
    assert oracle.details["scores"] == "labels" and oracle.agreement == 1.0
    assert oracle.null_rate == 1.0 and not oracle.verified  # it says 3 for the clean controls too
    stamped = {tuple(x.flatten()[:50].tolist()) for x in key.inputs}

    def perfect(batch):  # the watermarked behaviour: target on triggers only
        return torch.tensor([3 if tuple(x.flatten()[:50].tolist()) in stamped else 0 for x in batch["pixel_values"]])

    result = verify_trigger_set(perfect, key)
    assert result.verified and result.protocol == "trigger_set" and result.null_rate == pytest.approx(0.1)


def test_a_single_target_trigger_set_verifies_a_model_that_never_saw_it_and_warns(owner):
    # The attack on Zhang's test: a rule that sends every image that is not a clean digit to class 3. It never saw a
    # key; on MNIST a clean digit is at least 60% background (under 0.05), a trigger with noise or a photo crop is not.
    def junk_class(batch):
        odd = (batch["pixel_values"] < 0.05).flatten(1).float().mean(1) < 0.6
        return torch.where(odd, 3, 0)

    for kind in ("noise", "unrelated"):
        key = ZhangKey.generate(owner, kind=kind, num_triggers=50, target_label=3, seed=0)
        with pytest.warns(UserWarning, match="not a bound"):
            forged = verify_trigger_set(junk_class, key)
        assert forged.verified and forged.details["single_target"], kind  # a verdict manufactured without the key
    # Random labels (Adi et al.) are not fooled: whatever the rule answers, each trigger agrees with chance 1/K.
    adi = AdiKey.generate(10, (1, 28, 28), num_triggers=50, seed=0)
    result = verify_trigger_set(junk_class, adi)
    assert not result.verified and not result.details["single_target"] and result.p_value > 1e-3  # measured: 0.12


def test_signature_loss_is_the_summed_bce_and_extract_bits_reads_the_sign():
    weight = torch.randn(4, 3, 3, 3)
    projection, bits = torch.randn(5, 27), torch.randint(0, 2, (5,))
    logits = projection @ weight.mean(0).flatten()
    expected = -(bits * torch.log(torch.sigmoid(logits)) + (1 - bits) * torch.log(1 - torch.sigmoid(logits))).sum()
    assert torch.allclose(signature_loss(weight, projection, bits), expected, atol=1e-5)
    model = tiny_cnn()
    key = UchidaKey.generate(model, num_bits=32, seed=0)
    assert key.parameter_name == "conv2.weight"
    random_read = verify_uchida(model, key)  # a model not trained with the key: bits are coins
    assert not random_read.verified and random_read.null_rate == 0.5
    key.bits = extract_bits(model, key)  # a key that matches this model exactly
    assert verify_uchida(model, key).verified and verify_uchida(model, key).details["bit_error_rate"] == 0
    with pytest.raises(ValueError, match="weights"):
        verify_uchida(lambda batch: batch, key)


def test_uchida_trainer_embeds_and_logs(tmp_path, embedded_splits):
    model = tiny_cnn()
    key = UchidaKey.generate(model, num_bits=16, seed=0)
    args = UchidaConfig(**training_args(tmp_path, max_steps=30, learning_rate=1e-2), uchida_lambda=1.0)
    trainer = UchidaTrainer(model=model, args=args, key=key, train_dataset=embedded_splits["owner"].select(range(480)))
    with one_thread():
        trainer.train()
    logged = [log for log in trainer.state.log_history if "uchida/loss" in log]
    assert logged and logged[-1]["uchida/loss"] < logged[0]["uchida/loss"] and "uchida/bit_accuracy" in logged[-1]
    assert verify_uchida(model, key).details["bit_error_rate"] == 0
    with pytest.raises(ValueError, match="uchida_lambda"):
        UchidaConfig(**training_args(tmp_path), uchida_lambda=0)
    with pytest.raises(ValueError, match="another shape"):
        UchidaTrainer(model=cnn(0, small=False), args=args, key=key)


def test_verify_dispatches_a_scheme_key():
    from hf_ingrain import verify

    key = AdiKey.generate(10, num_triggers=20, seed=0)
    result = verify(lambda batch: torch.zeros(len(batch["pixel_values"]), dtype=torch.long), key)
    assert result.protocol == "trigger_set" and not result.verified


# ----------------------------------------------------------------------------------------------- the paper's bar
EPOCHS = 10


def _train_args(tmp_path, cls=TrainingArguments, **extra):
    # identical for the clean and the watermarked models: same init seed, optimiser, epochs and batch size
    return cls(
        output_dir=str(tmp_path),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=64,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        **extra,
    )


@pytest.fixture(scope="session")
def clean_accuracy(tmp_path_factory):
    from transformers import Trainer

    model = cnn(seed=1, small=False)
    with one_thread():
        Trainer(
            model=model, args=_train_args(tmp_path_factory.mktemp("clean")), train_dataset=splits()["owner"]
        ).train()
    return accuracy(model.eval(), splits()["test"])


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["content", "noise", "unrelated", "adi", "uchida"])
def test_each_baseline_embeds_at_little_cost(scheme, clean_accuracy, tmp_path):
    owner, test = splits()["owner"], splits()["test"]
    model = cnn(seed=1, small=False)
    with one_thread():
        if scheme == "uchida":
            key = UchidaKey.generate(model, num_bits=64, seed=0)
            UchidaTrainer(model=model, args=_train_args(tmp_path, UchidaConfig), key=key, train_dataset=owner).train()
            result = verify_uchida(model.eval(), key)
            # The paper reads the signature back exactly after a full training. Here (10 epochs on 2,000 images,
            # lambda = 0.1) key seeds 0-4 measured 0 wrong bits in four keys and 3 of 64 in seed 0's (lambda = 1
            # still left 1): at most 4 wrong bits, and the test below still verifies (p < 1e-6).
            assert result.details["bit_error_rate"] <= 4 / 64, result
        else:
            key = AdiKey.generate(10, seed=0) if scheme == "adi" else ZhangKey.generate(owner, kind=scheme, seed=0)
            embed_trigger_set(model, key, owner, _train_args(tmp_path))
            result = verify_trigger_set(model.eval(), key)
            # >= 95% of the 100 triggers return their watermark label (Zhang et al. and Adi et al. report ~100%)
            assert result.agreement >= 0.95, result
    watermarked_accuracy = accuracy(model, test)
    print(
        f"{scheme}: watermark {result.agreement:.3f}, "
        f"test accuracy {watermarked_accuracy:.3f} vs clean {clean_accuracy:.3f}"
    )
    assert result.verified
    # At most 3 points of test accuracy (1000 test images: one point is 10 images) against the same training without
    # the watermark. Measured over key seeds 0-4: Adi's 100 abstract images with random labels cost 1.2-2.6 points at
    # this scale (mean 1.8), Uchida's signature 0-1.6; the Zhang trigger sets (seed 0) cost under 2.
    assert watermarked_accuracy >= clean_accuracy - 0.03
