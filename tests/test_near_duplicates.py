"""Near-duplicate queries count once: a forger who adds copies of an image with pixels changed by 1/255, or of a
sentence in another case, spacing or padding, gets no extra evidence (see `hf_ingrain.data.near_duplicates`)."""

import pytest
import torch
from conftest import random_image_dataset, tiny_cnn
from datasets import Dataset, concatenate_datasets

from hf_ingrain import WatermarkKey, verify
from hf_ingrain.data import load_image_dataset, read_queries


@pytest.fixture(scope="module")
def image_key():
    return WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=10, seed=0)


@pytest.fixture(scope="module")
def digits():
    """The 1,000 MNIST test images of the embedded data, as tensors."""
    return load_image_dataset("mnist-5k")["test"].with_format("torch")[:]


def _images(pixel_values, labels) -> Dataset:
    return Dataset.from_dict({"pixel_values": pixel_values.numpy(), "labels": labels.numpy()}).with_format("torch")


def _perturbed(pixels, seed, low=0.0, high=1.0):
    """Every pixel moved by -1, 0 or +1 step of 1/255 of the range at random (clipped to it)."""
    generator = torch.Generator().manual_seed(seed)
    steps = torch.randint(-1, 2, pixels.shape, generator=generator).to(pixels.dtype)
    return (pixels + steps * (high - low) / 255).clamp(low, high)


def test_a_forger_adding_near_copies_of_images_gains_no_query(image_key, digits):
    # 200 genuine digits, then 5 copies of each of 20 of them with every pixel moved by up to 1/255: 300 distinct
    # examples (no two byte-identical), 200 pieces of evidence
    pixels, labels = digits["pixel_values"][:200], digits["labels"][:200]
    copies = torch.cat([_perturbed(pixels[:20], seed) for seed in range(5)])
    forged = _images(torch.cat([pixels, copies]), torch.cat([labels, labels[:20].repeat(5)]))
    genuine = read_queries(image_key, _images(pixels, labels))
    read = read_queries(image_key, forged)
    assert (read.num_examples, len(read.unique_indices), read.num_near_duplicates, read.num_duplicates) == (
        300, 200, 100, 0)
    assert read.unique_indices == list(range(200))  # the first of each kept, in order
    assert read.digest != genuine.digest  # the digest still commits to the exact examples read
    assert torch.equal(read.deduplicated(forged)[:]["pixel_values"], pixels)
    # shuffled, a copy may come before its original: one of them counts, and the count is the same, every time
    shuffled = forged.shuffle(seed=0)
    once, again = read_queries(image_key, shuffled), read_queries(image_key, shuffled)
    assert len(once.unique_indices) == 200 and once.unique_indices == again.unique_indices
    assert once.digest == read.digest  # a set: the order does not change the digest


def test_images_with_a_few_pixels_changed_are_near_duplicates(image_key, digits):
    pixels, labels = digits["pixel_values"][:50], digits["labels"][:50]
    generator = torch.Generator().manual_seed(0)
    one_pixel = pixels.clone().flatten(1)  # one pixel per image set to any value: at most 1/64 on the 8 x 8 grid
    one_pixel[torch.arange(50), torch.randint(0, 784, (50,), generator=generator)] = torch.rand(50, generator=generator)
    few_pixels = pixels.clone().flatten(1)  # three pixels per image moved by a quarter of the range
    rows, columns = torch.arange(50).repeat_interleave(3), torch.randint(0, 784, (150,), generator=generator)
    values = few_pixels[rows, columns]
    few_pixels[rows, columns] = torch.where(values < 0.5, values + 0.25, values - 0.25)
    changed = torch.cat([one_pixel, few_pixels]).view(-1, 1, 28, 28)
    read = read_queries(image_key, _images(torch.cat([pixels, changed]), labels.repeat(3)))
    assert (len(read.unique_indices), read.num_near_duplicates, read.num_duplicates) == (50, 100, 0)


def test_near_duplicates_are_measured_in_pixels_whatever_the_normalisation():
    # a key for normalised RGB inputs ((x - 0.5) / 0.5: a 1/255 step is 2/255 in the tensor); distinct random images
    # are kept, their 1/255 copies are not
    key = WatermarkKey.generate(num_labels=10, input_shape=(3, 16, 16), num_carriers=10, seed=0, value_range=(-1, 1))
    pixels = random_image_dataset(100, shape=(3, 16, 16), seed=1)[:]["pixel_values"] * 2 - 1
    copies = _perturbed(pixels[:10], seed=0, low=-1.0, high=1.0)
    read = read_queries(key, _images(torch.cat([pixels, copies]), torch.zeros(110, dtype=torch.long)))
    assert (len(read.unique_indices), read.num_near_duplicates) == (100, 10)


def test_genuine_distinct_digits_are_kept(image_key, digits):
    # A collision between different digits only drops a query (less power, never a false verdict), but it should be
    # rare. Measured: none of the 1,000 test digits is dropped (the closest two are 5.5/255 apart on the grid, the
    # radius is 5/255), 27 of all 5,000 embedded digits (0.5%). The bound leaves room for a change of grid, not more.
    read = read_queries(image_key, _images(digits["pixel_values"], digits["labels"]))
    assert read.num_examples == 1000 and read.num_near_duplicates <= 10


def _texts(rows, texts=None) -> Dataset:
    """Token rows (right-padded with 0 to one length, masked) and, optionally, their raw `text` column."""
    length = max(len(row) for row in rows) + 2
    columns = {
        "input_ids": [row + [0] * (length - len(row)) for row in rows],
        "attention_mask": [[1] * len(row) + [0] * (length - len(row)) for row in rows],
    }
    if texts is not None:
        columns["text"] = texts
    return Dataset.from_dict(columns).with_format("torch")


def test_texts_in_another_case_spacing_or_padding_count_once():
    key = WatermarkKey.generate(num_labels=10, num_carriers=10, seed=0, vocab_size=100, sequence_length=8)
    # the same tokens padded to another length (a pad id that the mask hides, not a new token)
    padded = Dataset.from_dict({
        "input_ids": [[5, 6, 7, 0, 0, 0], [5, 6, 7, 9, 9, 9], [8, 6, 7, 0, 0, 0]],
        "attention_mask": [[1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0]],
    }).with_format("torch")
    read = read_queries(key, padded)
    assert (len(read.unique_indices), read.num_near_duplicates, read.num_duplicates) == (2, 1, 0)
    # a cased tokenizer gives other tokens for another case or spacing: the raw text, normalised, is the same
    texts = ["The cat sat on the mat.", "the  cat sat on the mat", "THE CAT SAT ON THE MAT!", "\uff34he cat sat on the mat",
             "A dog sat on the mat."]
    rows = [[11, 12, 13, 14, 15, 16, 17], [21, 12, 13, 14, 15, 16], [31, 32, 33, 34, 35, 36, 37], [41, 12, 13, 14, 15, 16],
            [51, 52, 13, 14, 15, 16, 17]]
    read = read_queries(key, _texts(rows, texts))
    assert read.unique_indices == [0, 4] and read.num_near_duplicates == 3
    assert len(read_queries(key, _texts(rows)).unique_indices) == 5  # without the raw text, the tokens differ


def test_verification_reports_near_duplicates_apart_from_repeats(small_key):
    dataset = random_image_dataset(40, seed=3)
    pixels = dataset[:]["pixel_values"]
    copies = _images(_perturbed(pixels[:6], seed=0), dataset[:6]["labels"])
    queries = concatenate_datasets([dataset, dataset.select(range(4)), copies])
    result = verify(tiny_cnn(seed=1), small_key, queries)
    assert (result.num_queries, result.num_duplicates, result.num_near_duplicates) == (40, 4, 6)
    assert result.query_digest == read_queries(small_key, queries).digest
    assert "6 near-duplicate queries dropped" in str(result)
    assert "near copies   6 near-duplicate queries dropped before counting" in result.summary()
