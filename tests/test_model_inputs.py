"""Data as the official example scripts keep it (an image or text column, `label`, a transform, a save_to_disk folder,
a csv file) verified as the model received it, in Python and through the CLI (`hf_ingrain.data.preparation`)."""

import json

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image as ImageFeature, Value

from hf_ingrain import WatermarkKey, verify
from hf_ingrain.cli import main

from conftest import NUM_LABELS, local_tokenizer, tiny_bert
from test_key_preprocessing import rgb_resnet, vit_processor

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn", "the dog sat", "a cat ran"]


@pytest.fixture(scope="module")
def raw_digits(embedded_splits):
    """120 test digits as an image data set keeps them: 8-bit grayscale PIL images and a `label` ClassLabel."""
    from PIL import Image

    test = embedded_splits["test"].select(range(120))
    images = [Image.fromarray((np.asarray(x[0]) * 255).round().astype(np.uint8)) for x in test["pixel_values"]]
    features = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=NUM_LABELS)})
    return Dataset.from_dict({"image": images, "label": [int(y) for y in test["labels"]]}, features=features)


@pytest.fixture(scope="module")
def image_setup(raw_digits):
    processor = vit_processor()  # the script's eval transforms: RGB, rescale, normalise to [-1, 1]
    torch.manual_seed(0)
    model = rgb_resnet().eval()
    key = WatermarkKey.generate_for(model, processor, num_carriers=20, seed=0)
    key.train_ingrainer(benign_dataset=raw_digits, processor=processor, num_steps=30, num_reference_keys=2,
                        show_progress=False)  # raw images in, through the processor
    return model, processor, key


def _same(a, b):
    assert a.query_digest == b.query_digest and a.num_queries == b.num_queries == 120
    assert a.num_agreements == b.num_agreements and a.p_value == pytest.approx(b.p_value)
    assert a.details["accuracy"] == pytest.approx(b.details["accuracy"])


def test_raw_images_a_script_transform_and_preprocessed_data_give_one_verification(image_setup, raw_digits):
    model, processor, key = image_setup
    rgb = [image.convert("RGB") for image in raw_digits["image"]]
    pixels = processor(rgb, return_tensors="np")["pixel_values"]
    preprocessed = Dataset.from_dict({"pixel_values": pixels, "labels": raw_digits["label"]}).with_format("torch")
    expected = verify(model, key, preprocessed)
    _same(verify(model, key, raw_digits, processor=processor), expected)

    scripted = raw_digits.with_transform(  # run_image_classification.py's eval transform, `label` kept as it is
        lambda batch: {"pixel_values": processor([im.convert("RGB") for im in batch["image"]],
                                                 return_tensors="pt")["pixel_values"], "label": batch["label"]}
    )
    _same(verify(model, key, scripted), expected)


def test_the_cli_verifies_a_model_folder_with_its_processor_on_a_saved_data_set(
    image_setup, raw_digits, tmp_path, capsys
):
    model, processor, key = image_setup
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")  # what a Trainer with `processing_class` saves
    key.save(tmp_path / "key")
    raw_digits.save_to_disk(str(tmp_path / "data"))
    code = main(["verify", str(tmp_path / "model"), "--key", str(tmp_path / "key"), "--data", str(tmp_path / "data"),
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and report["num_queries"] == 120
    assert report["query_digest"] == verify(model, key, raw_digits, processor=processor).query_digest



def test_the_cli_default_data_goes_through_the_model_folders_processor(image_setup, tmp_path, capsys):
    # `hf-ingrain verify OUT --key KEY` with no --data: the embedded digits as 8-bit images, through the processor the
    # folder holds (0.1 sent 1-channel [0, 1] pixels to a 3-channel [-1, 1] model and exited 2); and push verifies
    # the same queries before it publishes
    from hf_ingrain.data import load_image_dataset

    model, processor, key = image_setup
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    key.save(tmp_path / "key")
    code = main(["verify", str(tmp_path / "model"), "--key", str(tmp_path / "key"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and report["num_queries"] == 1000, report
    raw = load_image_dataset(raw=True)["test"]
    assert raw.column_names == ["image", "label"] and raw[0]["image"].mode == "L"
    assert report["query_digest"] == verify(model, key, raw, processor=processor).query_digest


def test_text_from_a_column_and_a_csv_file_is_tokenized_as_the_model_receives_it(tmp_path, capsys):
    tokenizer = local_tokenizer()
    torch.manual_seed(0)
    model = tiny_bert(vocab_size=len(tokenizer)).eval()
    key = WatermarkKey.generate_for(model, tokenizer, num_carriers=10, seed=0)
    raw = Dataset.from_dict({"sentence": TEXTS * 8, "label": [i % NUM_LABELS for i in range(40)]})
    key.train_ingrainer(benign_dataset=raw, processor=tokenizer, num_steps=20, num_reference_keys=2,
                        show_progress=False)
    encoded = tokenizer(list(raw["sentence"]), padding="max_length", truncation=True, max_length=64,
                        return_tensors="np")
    tokenized = Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                                   "labels": list(raw["label"])}).with_format("torch")
    expected = verify(model, key, tokenized)
    from_column = verify(model, key, raw, processor=tokenizer)
    assert from_column.query_digest == expected.query_digest and from_column.num_queries == len(set(TEXTS)) == 5
    assert from_column.num_duplicates == 35  # the same sentence twice is one query, not two

    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    key.save(tmp_path / "key")
    raw.to_csv(str(tmp_path / "queries.csv"))
    code = main(["verify", str(tmp_path / "model"), "--key", str(tmp_path / "key"), "--data",
                 str(tmp_path / "queries.csv"), "--text-column", "sentence", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and report["query_digest"] == expected.query_digest


def test_a_key_model_or_data_of_the_other_modality_is_refused_before_any_query(
    image_setup, raw_digits, tmp_path, capsys
):
    model, processor, key = image_setup
    tokenizer = local_tokenizer()
    bert = tiny_bert(vocab_size=len(tokenizer))
    with pytest.raises(ValueError, match="key is for image models but BertForSequenceClassification reads text"):
        verify(bert, key, raw_digits, processor=processor)
    texts = Dataset.from_dict({"sentence": TEXTS, "label": [0, 1, 2, 3, 4]})
    with pytest.raises(ValueError, match="no image column.*a text data set"):
        verify(model, key, texts, processor=processor)
    with pytest.raises(ValueError, match="raw images in 'image': pass the model's image processor"):
        verify(model, key, raw_digits)

    from transformers import AutoModelForImageClassification, ResNetConfig

    grayscale = AutoModelForImageClassification.from_config(ResNetConfig(num_channels=1, num_labels=NUM_LABELS))
    with pytest.raises(ValueError, match="takes 1 channels, the key 3"):
        verify(grayscale, key, raw_digits, processor=processor)
    smaller = len(tokenizer) // 2  # a model that cannot read the tokenizer's upper ids
    with pytest.raises(ValueError, match=f"vocabulary of {smaller} tokens"):
        text_key = WatermarkKey.generate_for(tiny_bert(vocab_size=len(tokenizer)), tokenizer, num_carriers=3, seed=0)
        verify(tiny_bert(vocab_size=smaller), text_key,
               Dataset.from_dict({"sentence": TEXTS, "label": [0, 1, 2, 3, 4]}),
               processor=tokenizer)

    bert.save_pretrained(tmp_path / "bert")
    key.save(tmp_path / "key")
    assert main(["verify", str(tmp_path / "bert"), "--key", str(tmp_path / "key")]) == 2
    err = capsys.readouterr().err
    assert "reads text" in err and "Traceback" not in err


@pytest.mark.hub
def test_a_hub_suspect_is_queried_through_the_processor_published_at_the_same_commit(
    image_setup, raw_digits, loopback_hub, tmp_path, capsys
):
    from huggingface_hub import HfApi

    from hf_ingrain.hub import verify_from_hub

    model, processor, key = image_setup
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    api = HfApi(token="x")
    api.create_repo("someone/rgb-model")
    api.upload_folder(folder_path=str(tmp_path / "model"), repo_id="someone/rgb-model")
    expected = verify(model, key, raw_digits, processor=processor)
    result = verify_from_hub("someone/rgb-model", key, raw_digits, cache_dir=str(tmp_path / "cache"))
    assert result.query_digest == expected.query_digest and result.num_agreements == expected.num_agreements

    key.save(tmp_path / "key")
    raw_digits.save_to_disk(str(tmp_path / "data"))
    code = main(["verify", "someone/rgb-model", "--key", str(tmp_path / "key"), "--data", str(tmp_path / "data"),
                 "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and report["query_digest"] == expected.query_digest


def test_the_embedded_text_corpus_is_real_labelled_and_split_by_emoji():
    from hf_ingrain.data.text import LATIN_LANGUAGES, load_text_dataset

    splits = load_text_dataset(seed=0)
    assert splits["owner"].features["labels"].names == list(LATIN_LANGUAGES)
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes["owner"] > 15000 and sizes["test"] > 7500  # 5,244 emoji x 8 languages, less repeated names
    counts = np.bincount(splits["test"]["labels"], minlength=len(LATIN_LANGUAGES))
    assert counts.min() > 0.9 * counts.max()  # one name per emoji and language: balanced
    assert load_text_dataset(seed=0)["test"]["text"] == splits["test"]["text"]  # deterministic
    first = splits["owner"][:8]
    assert len(set(first["labels"])) == 8 and all(":" not in text and "_" not in text for text in first["text"])
