import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from hf_ingrain.data import load_image_dataset, split_indices


def test_embedded_splits_are_disjoint_deterministic_and_ready_for_trainer(embedded_splits):
    assert {k: len(v) for k, v in embedded_splits.items()} == {"owner": 2000, "attacker": 2000, "test": 1000}
    example = embedded_splits["owner"][0]
    assert example["pixel_values"].shape == (1, 28, 28) and example["pixel_values"].dtype == torch.float32
    assert 0.0 <= float(example["pixel_values"].min()) and float(example["pixel_values"].max()) <= 1.0
    # Disjoint: no image appears in two splits (MNIST has no exact duplicates in the 5,000).
    digests = {
        split: {row["pixel_values"].numpy().tobytes() for row in data} for split, data in embedded_splits.items()
    }
    assert not digests["owner"] & digests["attacker"] and not digests["owner"] & digests["test"]
    assert not digests["attacker"] & digests["test"]
    # Shuffled: all ten classes in every split (the source is sorted by label).
    assert all(len(set(np.asarray(data["labels"]).tolist())) == 10 for data in embedded_splits.values())
    again = load_image_dataset(seed=0)
    assert torch.equal(again["test"][:5]["pixel_values"], embedded_splits["test"][:5]["pixel_values"])
    other = load_image_dataset(seed=1)
    assert not torch.equal(other["test"][:5]["pixel_values"], embedded_splits["test"][:5]["pixel_values"])


def test_split_indices_partition():
    parts = split_indices(10, (0.4, 0.4, 0.2), seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(10)) and [len(p) for p in parts] == [4, 4, 2]


def _digit_images(num, seed):
    rng = np.random.default_rng(seed)
    return [PILImage.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L") for _ in range(num)]


def test_local_parquet_folder_with_train_and_test_splits(tmp_path):
    features = Features({"image": Image(), "label": ClassLabel(names=[str(i) for i in range(3)])})
    for split, num in (("train", 30), ("test", 10)):
        data = Dataset.from_dict({"image": _digit_images(num, len(split)), "label": [i % 3 for i in range(num)]}, features=features)
        data.to_parquet(str(tmp_path / f"{split}-00000-of-00001.parquet"))
    splits = load_image_dataset(str(tmp_path), seed=0, num_channels=1)
    assert {k: len(v) for k, v in splits.items()} == {"owner": 15, "attacker": 15, "test": 10}  # test split kept as is
    assert splits["owner"][0]["pixel_values"].shape == (1, 28, 28)
    assert splits["owner"].features["labels"].names == ["0", "1", "2"]


def test_local_imagefolder_resized_to_rgb(tmp_path):
    for label in ("cat", "dog"):
        folder = tmp_path / "train" / label
        folder.mkdir(parents=True)
        for index, image in enumerate(_digit_images(10, 3)):
            image.save(folder / f"{index}.png")
    splits = load_image_dataset(str(tmp_path), seed=0, num_channels=3, image_size=16)
    assert sum(len(v) for v in splits.values()) == 20
    assert splits["test"][0]["pixel_values"].shape == (3, 16, 16)


def test_bad_input_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="fractions"):
        load_image_dataset(fractions=(0.8, 0.8, 0.2))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="neither parquet"):
        load_image_dataset(str(tmp_path))
    with pytest.raises(ValueError, match="is a file"):
        load_image_dataset(str(tmp_path / "notes.txt"))


@pytest.mark.slow  # ~21 s: fresh processes; CI runs it, the default pytest stays within its 5 minutes
def test_the_local_wordpiece_tokenizer_is_the_same_in_every_process():
    """`tokenizers`' WordPieceTrainer broke ties in a per-process hash order (two builds on the same tweets differed in
    472 ids); the package's tokenizer must give the same vocabulary in two fresh processes, on text with many ties."""
    import subprocess
    import sys

    code = (
        "import json; from hf_ingrain.data import load_text_dataset; "
        "from hf_ingrain.data.text import wordpiece_tokenizer; "
        "t = wordpiece_tokenizer(load_text_dataset()['owner']['text'], vocab_size=500); "
        "print(json.dumps(sorted(t.get_vocab().items())))"
    )
    builds = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
              for _ in range(2)]
    assert builds[0] == builds[1] and len(builds[0]) > 1000


def test_the_local_wordpiece_tokenizer_splits_unknown_words_into_known_pieces():
    from hf_ingrain.data.text import wordpiece_tokenizer

    tokenizer = wordpiece_tokenizer(["the cat sat on this mat", "a dog ran"] * 3, vocab_size=60)  # "##s" from "this"
    assert tokenizer("the cats").tokens() == ["[CLS]", "the", "cat", "##s", "[SEP]"]
    assert tokenizer.pad_token_id == 0 and len(tokenizer) <= 60
    with pytest.raises(ValueError, match="must exceed the 5 special tokens"):
        wordpiece_tokenizer(["a"], vocab_size=5)
