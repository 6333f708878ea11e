"""The official example scripts' shape, with the three-line swap: `HfArgumentParser` over model / data /
`IngrainConfig` dataclasses, `--ingrain_key DIR`, the scripts' own data handling (an image column with a random
augmentation in `set_transform` and a `label` column; a text column tokenized with `map` and padded per batch by
`DataCollatorWithPadding`), `processing_class` saved with the model, then `hf-ingrain verify` on the output folder.

These check the plumbing end to end on a few steps of training; whether such models verify is measured elsewhere."""

import json
from dataclasses import dataclass, field

import numpy as np
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
    rng = np.random.default_rng(0)

    def train_transforms(batch):  # the script's: RGB, a random flip, the processor's normalisation
        images = [image.convert("RGB") for image in batch["image"]]
        images = [image.transpose(0) if rng.random() < 0.5 else image for image in images]
        batch["pixel_values"] = list(processor(images, return_tensors="pt")["pixel_values"])
        return batch

    def collate_fn(examples):
        return {"pixel_values": torch.stack([e["pixel_values"] for e in examples]),
                "labels": torch.tensor([e["label"] for e in examples])}

    train.set_transform(train_transforms)
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
