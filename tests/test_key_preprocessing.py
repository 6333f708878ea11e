"""Keys made for a model as its processor or tokenizer feeds it (`WatermarkKey.generate_for`), and data checked
against the preprocessing the key records."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_ingrain import WatermarkKey

from conftest import NUM_LABELS, local_tokenizer, tiny_bert


def rgb_resnet(num_labels=NUM_LABELS):
    from transformers import AutoModelForImageClassification, ResNetConfig

    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=num_labels)
    return AutoModelForImageClassification.from_config(config)


def vit_processor(**kwargs):
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": 28, "width": 28}, **kwargs)


def digits_as_the_processor_gives_them(processor, num=16):
    """Grayscale 8-bit digits, converted to RGB and run through `processor`, as the image-classification script does."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).convert("RGB") for _ in range(num)]
    return torch.as_tensor(np.array(processor(images, return_tensors="np")["pixel_values"]))


def test_an_image_key_follows_the_processor_rgb_size_and_normalisation():
    processor = vit_processor()  # mean 0.5, std 0.5: RGB values in [-1, 1]
    key = WatermarkKey.generate_for(rgb_resnet(), processor, num_carriers=20, seed=0)
    assert key.input_shape == (3, 28, 28) and key.num_labels == NUM_LABELS
    assert key.value_range == pytest.approx((-1.0, 1.0))
    assert key.carriers.min() >= -1 and key.carriers.max() <= 1 and key.carriers.min() < -0.9
    assert key.preprocessing["processor_class"] == type(processor).__name__
    key.check_inputs(digits_as_the_processor_gives_them(processor), "The processed digits")  # passes
    with pytest.raises(ValueError, match=r"shape \(1, 28, 28\)"):
        key.check_inputs(torch.rand(4, 1, 28, 28), "One-channel digits")
    # ImageNet statistics: each channel has its own range, and the carriers and the check follow it
    imagenet = vit_processor(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    key = WatermarkKey.generate_for(rgb_resnet(), imagenet, num_carriers=200, seed=0)
    ranges = torch.tensor(key.preprocessing["channel_ranges"])
    for channel, (low, high) in enumerate(ranges.tolist()):
        values = key.carriers[:, channel]
        assert low - 1e-6 <= values.min() and values.max() <= high + 1e-6
    key.check_inputs(digits_as_the_processor_gives_them(imagenet), "The processed digits")
    with pytest.raises(ValueError, match="channel 0"):  # within the overall range, outside the red channel's
        key.check_inputs(torch.full((2, 3, 28, 28), float(ranges[2, 1])), "Wrongly normalised data")


def test_a_text_key_follows_the_tokenizer_and_its_carriers_look_like_its_batches():
    tokenizer = local_tokenizer()
    model = tiny_bert(vocab_size=len(tokenizer))
    key = WatermarkKey.generate_for(model, tokenizer, num_carriers=30, seed=0)
    assert key.vocab_size == len(tokenizer) and key.carriers.shape == (30, 64)  # the tokenizer allows 64
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    special = set(tokenizer.all_special_ids)
    for ids, mask in zip(key.carriers.tolist(), key.carrier_attention_mask.tolist()):
        length = sum(mask)
        assert ids[0] == cls_id and ids[length - 1] == sep_id and set(ids[length:]) <= {pad_id}
        assert not set(ids[1 : length - 1]) & special
    # decoded and re-encoded, a carrier is what the tokenizer gives: it looks like the model's batches
    text = tokenizer.decode(key.carriers[0][key.carrier_attention_mask[0].bool()], skip_special_tokens=True)
    assert tokenizer(text)["input_ids"][0] == cls_id
    assert WatermarkKey.generate_for(model, tokenizer, seed=0, sequence_length=16).carriers.shape[1] == 16


def test_a_text_key_refuses_a_tokenizer_the_model_cannot_embed_or_without_padding():
    tokenizer = local_tokenizer(vocab_size=100)
    with pytest.raises(ValueError, match="resize the model's embeddings"):
        WatermarkKey.generate_for(tiny_bert(vocab_size=len(tokenizer) - 5), tokenizer)
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        WatermarkKey.generate_for(tiny_bert(vocab_size=len(tokenizer)), tokenizer)
    with pytest.raises(ValueError, match="needs its tokenizer"):
        WatermarkKey.generate_for(tiny_bert())


def test_a_key_for_a_tokenizer_trains_an_ingrainer_on_dynamically_padded_data():
    from datasets import Dataset

    tokenizer = local_tokenizer()
    texts = ["the cat sat", "a dog ran in the park at dawn", "birds sing", "the mat"] * 16
    data = Dataset.from_dict({"text": texts, "labels": [i % NUM_LABELS for i in range(len(texts))]})
    data = data.map(lambda batch: tokenizer(batch["text"]), batched=True, remove_columns=["text"])  # ragged rows
    key = WatermarkKey.generate_for(tiny_bert(vocab_size=len(tokenizer)), tokenizer, num_carriers=10, seed=0)
    key.train_ingrainer(benign_dataset=data.with_format("torch"), num_steps=30, show_progress=False,
                        num_reference_keys=1)
    assert key.training_info["spread"] and len(key.reference_ingrainers) == 1
