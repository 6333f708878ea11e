import os

import pytest
import torch
from transformers import Trainer, TrainingArguments

from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey, verify

from conftest import (
    NUM_LABELS, random_image_dataset, random_text_dataset, tiny_bert, tiny_cnn, tiny_resnet, training_args,
)


def test_config_rejects_invalid_lambda_and_temperature(tmp_path):
    with pytest.raises(ValueError, match="ingrain_lambda"):
        IngrainConfig(output_dir=str(tmp_path), ingrain_lambda=-0.1)
    with pytest.raises(ValueError, match="ingrain_temperature"):
        IngrainConfig(output_dir=str(tmp_path), ingrain_temperature=0.0)
    with pytest.raises(ValueError, match="ingrain_target_scale"):
        IngrainConfig(output_dir=str(tmp_path), ingrain_target_scale=0.0)
    assert IngrainConfig(output_dir=str(tmp_path)).ingrain_temperature == 4.0


def test_target_scale_and_exclude_label_shape_the_ingrain_term(small_key, tmp_path):
    # ingrain_target_scale multiplies the ingrainer's logits; ingrain_exclude_label takes the KL over the classes
    # other than the label, so the term no longer depends on the model's logit for the true class at all.
    def trainer(**fields):
        args = IngrainConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", **fields)
        return IngrainTrainer(model=tiny_cnn(seed=0), args=args, ingrainer=small_key)

    torch.manual_seed(0)
    logits, targets, labels = torch.randn(4, NUM_LABELS), torch.randn(4, NUM_LABELS), torch.tensor([0, 1, 2, -100])
    plain, scaled = trainer(), trainer(ingrain_target_scale=0.5)
    assert torch.allclose(scaled.ingrain_loss(logits, targets, labels), plain.ingrain_loss(logits, 0.5 * targets))
    moved = logits.clone()
    moved[torch.arange(3), labels[:3]] += 5.0  # only the true classes of the three labelled examples change
    excluding = trainer(ingrain_exclude_label=True)
    before, after = excluding.ingrain_loss(logits, targets, labels), excluding.ingrain_loss(moved, targets, labels)
    assert torch.allclose(before, after, atol=1e-5)
    assert torch.equal(before[3], plain.ingrain_loss(logits, targets)[3])  # an ignored label keeps every class
    assert not torch.allclose(plain.ingrain_loss(logits, targets), plain.ingrain_loss(moved, targets), atol=1e-3)
    with pytest.raises(ValueError, match="one integer class label"):
        excluding.ingrain_loss(logits, targets, torch.rand(4, NUM_LABELS))


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_lambda_zero_gives_exactly_the_plain_trainer(small_key, tmp_path):
    data = random_image_dataset()
    plain = tiny_cnn(seed=1)
    Trainer(model=plain, args=TrainingArguments(**training_args(tmp_path / "a")), train_dataset=data).train()
    ingrained = tiny_cnn(seed=1)
    args = IngrainConfig(**training_args(tmp_path / "b"), ingrain_lambda=0.0)
    IngrainTrainer(model=ingrained, args=args, train_dataset=data, ingrainer=small_key).train()
    for name, value in _weights(plain).items():
        assert torch.equal(value, ingrained.state_dict()[name]), name


def test_parameters_change_and_both_losses_are_logged(small_key, tmp_path):
    model = tiny_cnn(seed=1)
    before = _weights(model)
    trainer = IngrainTrainer(
        model=model, args=IngrainConfig(**training_args(tmp_path)), train_dataset=random_image_dataset(), ingrainer=small_key
    )
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    logged = [entry for entry in trainer.state.log_history if "ingrain/loss" in entry]
    assert logged and all(entry["ingrain/loss"] > 0 and entry["task/loss"] > 0 for entry in logged)
    # The total is the task loss plus lambda times the ingrain loss.
    first = logged[0]
    assert first["loss"] == pytest.approx(first["task/loss"] + 0.5 * first["ingrain/loss"], rel=1e-3)


def test_ingrain_term_pulls_the_model_towards_the_ingrainer(small_key, tmp_path):
    data = random_image_dataset(128)
    kl = {}
    for lam in (0.0, 5.0):
        trainer = IngrainTrainer(
            model=tiny_cnn(seed=1), args=IngrainConfig(**training_args(tmp_path / str(lam), max_steps=30), ingrain_lambda=lam),
            train_dataset=data, ingrainer=small_key,
        )
        trainer.train()
        kl[lam] = [e["ingrain/loss"] for e in trainer.state.log_history if "ingrain/loss" in e][-5:]
    assert sum(kl[5.0]) < sum(kl[0.0])


def _assert_accumulation_matches_the_full_batch(key, tmp_path, make_model, **trainer_kwargs):
    """Two optimizer steps on 16-example batches, and the same with 2 accumulated 8-example micro-batches: the same
    weights. Sequential sampling: both runs see the same examples in the same accumulated batches."""
    data = random_image_dataset(32)
    models = {}
    for name, batch, steps in (("full", 16, 1), ("accumulated", 8, 2)):
        model = make_model()
        args = IngrainConfig(
            **training_args(tmp_path / name, per_device_train_batch_size=batch, max_steps=2, optim="sgd", learning_rate=0.5),
            gradient_accumulation_steps=steps, ingrain_lambda=2.0,
        )
        trainer = IngrainTrainer(model=model, args=args, train_dataset=data, ingrainer=key, **trainer_kwargs)
        trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(data)
        trainer.train()
        models[name] = model
    for name, value in models["full"].state_dict().items():
        torch.testing.assert_close(value, models["accumulated"].state_dict()[name], rtol=1e-4, atol=1e-5)
    return trainer


def test_gradient_accumulation_matches_the_full_batch(small_key, tmp_path):
    _assert_accumulation_matches_the_full_batch(small_key, tmp_path, lambda: tiny_cnn(seed=1))


def test_logits_cache_gives_the_same_training(small_key, tmp_path):
    data = random_image_dataset()
    weights = {}
    for cache in (False, True):
        model = tiny_cnn(seed=1)
        args = IngrainConfig(**training_args(tmp_path / str(cache)), ingrain_cache_logits=cache)
        IngrainTrainer(model=model, args=args, train_dataset=data, ingrainer=small_key).train()
        weights[cache] = model.state_dict()
    for key, value in weights[False].items():
        torch.testing.assert_close(value, weights[True][key], rtol=1e-5, atol=1e-6)


def test_logits_cache_refuses_a_random_pipeline(small_key, tmp_path):
    data = random_image_dataset()
    data.set_transform(lambda batch: {"pixel_values": torch.rand(len(batch["labels"]), 1, 28, 28), "labels": batch["labels"]})
    with pytest.raises(ValueError, match="deterministic"):
        IngrainTrainer(
            model=tiny_cnn(), args=IngrainConfig(**training_args(tmp_path), ingrain_cache_logits=True),
            train_dataset=data, ingrainer=small_key,
        )


def test_works_with_a_transformers_resnet(small_key, tmp_path):
    model = tiny_resnet()
    trainer = IngrainTrainer(
        model=model, args=IngrainConfig(**training_args(tmp_path, max_steps=2)), train_dataset=random_image_dataset(),
        ingrainer=small_key,
    )
    trainer.train()
    assert any("ingrain/loss" in e for e in trainer.state.log_history)


def test_works_with_a_sequence_classifier_and_a_text_key(tmp_path):
    key = WatermarkKey.generate(num_labels=NUM_LABELS, vocab_size=100, num_carriers=10, seed=0, sequence_length=12)
    key.train_ingrainer(num_steps=50, show_progress=False, num_reference_keys=0)
    trainer = IngrainTrainer(
        model=tiny_bert(), args=IngrainConfig(**training_args(tmp_path, max_steps=2)), train_dataset=random_text_dataset(),
        ingrainer=key,
    )
    trainer.train()
    assert any("ingrain/loss" in e for e in trainer.state.log_history)


def test_mismatched_labels_or_inputs_raise_before_training(small_key, tmp_path):
    args = IngrainConfig(**training_args(tmp_path))
    with pytest.raises(ValueError, match="labels"):
        IngrainTrainer(model=tiny_cnn(num_labels=5), args=args, train_dataset=random_image_dataset(), ingrainer=small_key)
    with pytest.raises(ValueError, match="shape"):
        IngrainTrainer(
            model=tiny_cnn(), args=args, train_dataset=random_image_dataset(shape=(1, 32, 32)), ingrainer=small_key
        )
    with pytest.raises(ValueError, match="pixel_values"):
        IngrainTrainer(model=tiny_cnn(), args=args, train_dataset=random_text_dataset(), ingrainer=small_key)
    untrained = WatermarkKey.generate(num_labels=NUM_LABELS, input_shape=(1, 28, 28), num_carriers=3, seed=0)
    with pytest.raises(ValueError, match="train_ingrainer"):
        IngrainTrainer(model=tiny_cnn(), args=args, train_dataset=random_image_dataset(), ingrainer=untrained)
    with pytest.raises(ValueError, match="IngrainConfig"):
        IngrainTrainer(model=tiny_cnn(), args=TrainingArguments(**training_args(tmp_path)), ingrainer=small_key)


def _all_bytes(folder):
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                yield os.path.join(root, name), f.read()


def test_no_byte_of_the_key_appears_in_the_output_directory(small_key, tmp_path):
    args = IngrainConfig(**training_args(tmp_path, save_strategy="steps", save_steps=2))
    trainer = IngrainTrainer(model=tiny_cnn(), args=args, train_dataset=random_image_dataset(), ingrainer=small_key)
    trainer.train()
    trainer.save_model()
    # 64-byte windows of every secret: carriers, their labels, every ingrainer tensor, and the salt.
    secrets = [small_key.carriers.numpy().tobytes()[i : i + 64] for i in (0, 4096)]
    secrets += [p.detach().numpy().tobytes()[:64] for p in small_key.ingrainer.parameters()]
    secrets += [small_key.carrier_labels.numpy().tobytes(), small_key.salt, small_key.salt.hex().encode()]
    files = list(_all_bytes(tmp_path / "out"))
    assert any(path.endswith("model.safetensors") for path, _ in files)
    assert any("checkpoint-" in path for path, _ in files)
    for path, content in files:
        for secret in secrets:
            assert secret not in content, f"secret bytes found in {path}"


def test_mixed_precision_training_keeps_the_losses_finite(small_key, tmp_path):
    # bf16 autocast on CPU: the model's logits are bf16, the ingrain loss is computed in float32 (losses.py).
    trainer = IngrainTrainer(
        model=tiny_cnn(seed=1), args=IngrainConfig(**training_args(tmp_path), bf16=True),
        train_dataset=random_image_dataset(), ingrainer=small_key,
    )
    trainer.train()
    logged = [e for e in trainer.state.log_history if "ingrain/loss" in e]
    assert logged and all(torch.isfinite(torch.tensor([e["ingrain/loss"], e["task/loss"]])).all() for e in logged)


# ----------------------------------------------------------------------------------------------- data as users have it
def test_trains_on_a_streaming_dataset(small_key, tmp_path):
    streaming = random_image_dataset(64).to_iterable_dataset()
    model = tiny_cnn(seed=1)
    before = _weights(model)
    args = IngrainConfig(**training_args(tmp_path, max_steps=3))
    trainer = IngrainTrainer(model=model, args=args, train_dataset=streaming, ingrainer=small_key)
    trainer.train()
    assert trainer.state.global_step == 3 and any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any("ingrain/loss" in entry for entry in trainer.state.log_history)
    with pytest.raises(ValueError, match="map-style"):  # the cache needs an index per example: a clear refusal
        IngrainTrainer(
            model=tiny_cnn(), args=IngrainConfig(**training_args(tmp_path, max_steps=3), ingrain_cache_logits=True),
            train_dataset=streaming, ingrainer=small_key,
        )
    with pytest.raises(ValueError, match="shape"):  # the first streamed example is still checked
        IngrainTrainer(
            model=tiny_cnn(), args=args, ingrainer=small_key,
            train_dataset=random_image_dataset(8, shape=(1, 32, 32)).to_iterable_dataset(),
        )


class _PlainCNN(torch.nn.Module):
    """A classifier whose forward takes no loss kwargs (so the Trainer's `model_accepts_loss_kwargs` is False)."""

    def __init__(self, seed):
        super().__init__()
        self.inner = tiny_cnn(seed=seed)
        self.config = self.inner.config

    def forward(self, pixel_values, labels=None):
        return self.inner(pixel_values=pixel_values)


def _sum_over_items(outputs, labels, num_items_in_batch=None):
    """A `compute_loss_func` as the Trainer documents it: normalised by the items of the whole accumulated batch."""
    loss = torch.nn.functional.cross_entropy(outputs["logits"].float(), labels, reduction="sum")
    return loss / num_items_in_batch if num_items_in_batch is not None else loss / len(labels)


def test_the_ingrain_term_follows_compute_loss_func_under_gradient_accumulation(small_key, tmp_path):
    # With a `compute_loss_func`, the Trainer treats the loss as already scaled for accumulation (it does not divide
    # it by the steps), so the ingrain term must be normalised over the accumulated batch too, whatever the model.
    trainer = _assert_accumulation_matches_the_full_batch(
        small_key, tmp_path, lambda: _PlainCNN(seed=1), compute_loss_func=_sum_over_items
    )
    assert not trainer.model_accepts_loss_kwargs  # the case the Trainer's own rule for the model does not cover


# ----------------------------------------------------------------------------------------------- config and secrets
def test_a_config_built_from_a_scripts_training_arguments_keeps_every_value(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=3e-4, hub_token="hf_secret", seed=11)
    config = IngrainConfig.from_training_arguments(args, ingrain_lambda=0.25)
    assert (config.learning_rate, config.seed, config.ingrain_lambda) == (3e-4, 11, 0.25)
    assert config.hub_token == "hf_secret"  # to_dict() masks it; a config built from to_dict() would lose it
    assert args.to_dict()["hub_token"] != "hf_secret"
    with pytest.raises(ValueError, match="no fields"):
        IngrainConfig.from_training_arguments(args, ingrain_lambdaa=0.25)
    with pytest.raises(ValueError, match="from_training_arguments"):
        IngrainTrainer(model=tiny_cnn(), args=args, ingrainer=tiny_cnn())


def test_the_ingrainer_never_reaches_the_accelerator_state(small_key, tmp_path):
    trainer = IngrainTrainer(
        model=tiny_cnn(), args=IngrainConfig(**training_args(tmp_path)), train_dataset=random_image_dataset(),
        ingrainer=small_key,
    )
    secrets = [p.detach().numpy().tobytes()[:64] for p in small_key.ingrainer.parameters()]
    for moment in ("built", "trained"):  # whatever the accelerator registers, save_state writes
        assert all(model is not trainer.ingrainer for model in trainer.accelerator._models), moment
        trainer.accelerator.save_state(str(tmp_path / moment))
        for path, content in _all_bytes(tmp_path / moment):
            assert not any(secret in content for secret in secrets), path
        trainer.train()


def test_a_script_names_the_key_by_its_folder_on_the_command_line(small_key, tmp_path):
    # The three-line swap: an HfArgumentParser script takes `--ingrain_key DIR` and never handles the key itself.
    from transformers import HfArgumentParser

    key_dir = tmp_path / "owner_key"
    small_key.save(key_dir)
    data = random_image_dataset()
    (args,) = HfArgumentParser(IngrainConfig).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path / "out"), "--ingrain_key", str(key_dir), "--max_steps", "4", "--use_cpu", "true",
         "--per_device_train_batch_size", "16", "--learning_rate", "1e-3", "--report_to", "none",
         "--save_strategy", "no", "--seed", "0", "--disable_tqdm", "true"]
    )
    by_folder = tiny_cnn(seed=1)
    IngrainTrainer(model=by_folder, args=args, train_dataset=data).train()
    by_object = tiny_cnn(seed=1)
    IngrainTrainer(model=by_object, args=IngrainConfig(**training_args(tmp_path / "b")), train_dataset=data,
                   ingrainer=small_key).train()
    for name, value in _weights(by_object).items():
        assert torch.equal(value, by_folder.state_dict()[name]), name
    # What logging integrations and cards read holds not even the path (the bytes test covers the output folder).
    assert str(key_dir) not in args.to_json_string() and "<INGRAIN_KEY>" in args.to_json_string()


def test_a_key_folder_that_is_missing_inside_the_output_or_doubled_is_refused(small_key, tmp_path):
    with pytest.raises(ValueError, match="must not contain one another"):
        IngrainConfig(**training_args(tmp_path), ingrain_key=str(tmp_path / "out" / "key"))
    args = IngrainConfig(**training_args(tmp_path), ingrain_key=str(tmp_path / "nothing_here"))
    with pytest.raises(ValueError, match="holds no key.json"):
        IngrainTrainer(model=tiny_cnn(), args=args, train_dataset=random_image_dataset())
    with pytest.raises(ValueError, match="Both"):
        IngrainTrainer(model=tiny_cnn(), args=args, train_dataset=random_image_dataset(), ingrainer=small_key)
    with pytest.raises(ValueError, match="ingrain_key"):
        IngrainTrainer(
            model=tiny_cnn(), args=IngrainConfig(**training_args(tmp_path)), train_dataset=random_image_dataset()
        )


def test_eval_loss_is_the_task_loss_and_evaluate_keeps_the_epoch(small_key, tmp_path):
    # `metric_for_best_model="loss"` must select on the task, as with a plain Trainer; the ingrain term is logged apart.
    data = random_image_dataset()
    trainer = IngrainTrainer(
        model=tiny_cnn(seed=1), args=IngrainConfig(**training_args(tmp_path)), train_dataset=data, eval_dataset=data,
        ingrainer=small_key,
    )
    trainer.train()
    metrics = trainer.evaluate()
    plain = Trainer(model=trainer.model, args=TrainingArguments(**training_args(tmp_path / "plain")), eval_dataset=data)
    assert metrics["eval_loss"] == pytest.approx(plain.evaluate()["eval_loss"], rel=1e-6)
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_task/loss"], rel=1e-6)
    assert metrics["eval_ingrain/loss"] > 0
    assert metrics["epoch"] == trainer.state.epoch
    assert trainer.state.log_history[-1]["eval_loss"] == metrics["eval_loss"]


def test_a_lora_model_trains_with_the_ingrain_term_and_verifies_as_its_merged_and_bf16_copies(tmp_path):
    # What users fine-tune: a PEFT/LoRA model (peft is the `peft` extra). The verification of the adapter model is the
    # verification of the model it merges into; a bf16 copy of it is queried in its own dtype.
    from peft import LoraConfig, get_peft_model

    from hf_ingrain import verify

    key = WatermarkKey.generate(num_labels=NUM_LABELS, vocab_size=100, num_carriers=10, seed=0, sequence_length=12)
    key.train_ingrainer(benign_dataset=random_text_dataset(), num_steps=20, num_reference_keys=2, show_progress=False)
    lora = LoraConfig(r=4, target_modules=["query", "value"], modules_to_save=["classifier"], task_type="SEQ_CLS")
    model = get_peft_model(tiny_bert(), lora)
    before = {k: v.clone() for k, v in model.named_parameters() if v.requires_grad}
    trainer = IngrainTrainer(model=model, args=IngrainConfig(**training_args(tmp_path, max_steps=3)),
                             train_dataset=random_text_dataset(), ingrainer=key)
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in model.named_parameters() if v.requires_grad)
    assert all(entry["ingrain/loss"] > 0 for entry in trainer.state.log_history if "ingrain/loss" in entry)
    queries = random_text_dataset(seed=1)
    adapter = verify(model, key, queries)
    merged = model.merge_and_unload()
    assert verify(merged, key, queries).num_agreements == adapter.num_agreements
    half = verify(merged.to(torch.bfloat16), key, queries)  # measured: the same count; bf16 may flip a near tie
    assert half.num_queries == adapter.num_queries and abs(half.num_agreements - adapter.num_agreements) <= 3


def test_a_pretrained_model_with_a_new_head_is_ingrained(small_key, tmp_path):
    # The fine-tuning path of the example scripts: a "pretrained" checkpoint (trained and saved here) loaded with
    # another number of labels and `ignore_mismatched_sizes=True`.
    from transformers import AutoModelForImageClassification

    tiny_resnet(num_labels=5).save_pretrained(tmp_path / "pretrained")
    model = AutoModelForImageClassification.from_pretrained(
        tmp_path / "pretrained", num_labels=NUM_LABELS, ignore_mismatched_sizes=True
    )
    trainer = IngrainTrainer(model=model, args=IngrainConfig(**training_args(tmp_path, max_steps=2)),
                             train_dataset=random_image_dataset(), ingrainer=small_key)
    trainer.train()
    assert model.config.num_labels == NUM_LABELS and any("ingrain/loss" in e for e in trainer.state.log_history)


def test_a_convnext_from_a_default_config_trains_and_verifies_on_28x28_images(small_key, tmp_path):
    # ConvNextConfig's default image_size is 224, which a convolutional model ignores: 0.1 trained it on 28x28 digits
    # and then verify refused it ("takes 224x224 images, the key 28x28"). What a model takes is what it runs on.
    from transformers import AutoModelForImageClassification, ConvNextConfig

    torch.manual_seed(0)
    config = ConvNextConfig(num_channels=1, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=NUM_LABELS)
    assert config.image_size == 224
    model = AutoModelForImageClassification.from_config(config)
    trainer = IngrainTrainer(model=model, args=IngrainConfig(**training_args(tmp_path, max_steps=2)),
                             train_dataset=random_image_dataset(), ingrainer=small_key)
    trainer.train()
    result = verify(model, small_key, random_image_dataset(32, seed=1))
    assert result.num_queries == 32


def test_a_model_that_cannot_take_the_keys_images_is_refused_when_training_starts_as_verify_refuses_it(
    small_key, tmp_path
):
    from transformers import AutoModelForImageClassification, ViTConfig

    vit = AutoModelForImageClassification.from_config(ViTConfig(  # a ViT runs on the size it was built for only
        image_size=32, patch_size=8, num_channels=1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, num_labels=NUM_LABELS,
    ))
    with pytest.raises(ValueError, match="takes 32x32 images, the key 28x28") as at_training:
        IngrainTrainer(model=vit, args=IngrainConfig(**training_args(tmp_path)), train_dataset=random_image_dataset(),
                       ingrainer=small_key)
    with pytest.raises(ValueError, match="takes 32x32 images, the key 28x28") as at_verification:
        verify(vit, small_key, random_image_dataset(8))
    assert str(at_training.value) == str(at_verification.value)
    assert vit.training  # the probe ran in eval mode and handed the model back as it came
