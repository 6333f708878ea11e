"""Trained models shared by the verification tests: each is trained once per test session (cached), on 1 thread.

On a small machine shared with other jobs, 2 torch threads train these tiny models ~10x slower than 1 (thread
contention), so training here runs on one thread and restores the setting afterwards.
"""

import contextlib
import functools
import tempfile

import pytest
import torch
import torch.nn.functional as F

from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey
from hf_ingrain.data import load_image_dataset
from hf_ingrain.models import SmallCNNConfig, SmallCNNForImageClassification

NUM_INDEPENDENT = 10


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Import into a test module to run all of it on one thread (see the module docstring)."""
    with one_thread():
        yield


@functools.lru_cache(maxsize=None)
def splits(seed: int = 0):
    return load_image_dataset(seed=seed)


def cnn(seed: int, small: bool = True) -> SmallCNNForImageClassification:
    torch.manual_seed(seed)
    sizes = dict(hidden_channels=(8, 16), hidden_size=32) if small else {}
    return SmallCNNForImageClassification(SmallCNNConfig(num_labels=10, **sizes))


def fit(model, dataset, epochs: int = 5, seed: int = 0, learning_rate: float = 2e-3, batch_size: int = 32):
    """Plain supervised training (Adam, cross-entropy): fast, for models that only need to be decent classifiers."""
    data = dataset[:]
    pixels, labels = data["pixel_values"], data["labels"]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    with one_thread():
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                loss = F.cross_entropy(model(pixel_values=pixels[index]).logits, labels[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return model.eval()


def accuracy(model, dataset) -> float:
    data = dataset[:]
    with torch.no_grad():
        return (model(pixel_values=data["pixel_values"]).logits.argmax(-1) == data["labels"]).float().mean().item()


@functools.lru_cache(maxsize=None)
def trained_key() -> WatermarkKey:
    """A properly trained key: the ingrainer's choices spread over the owner's data (as the README recommends)."""
    key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=100, seed=0)
    # 17 ingrainers (the key's and 16 references) of 600 steps on batches of 356 images: ~16 min on one thread
    # (~11 min on 2 idle cores, but a key trained on 2 threads differs in its last bits from this one, which the
    # thresholds of the tests below were checked with)
    with one_thread():  # 600 steps (the default before 0.2): the key the thresholds below were checked with
        key.train_ingrainer(benign_dataset=splits()["owner"], num_steps=600, show_progress=False)
    return key


@functools.lru_cache(maxsize=None)
def ingrained_model():
    """The owner's model: trained on the owner split with the ingrain loss (λ = 0.5, T = 4)."""
    model = cnn(seed=7, small=False)
    scratch = tempfile.TemporaryDirectory()  # nothing is saved there (save_strategy="no")
    args = IngrainConfig(
        output_dir=scratch.name,
        num_train_epochs=10,
        per_device_train_batch_size=64,
        learning_rate=1e-3,
        ingrain_lambda=0.5,
        ingrain_temperature=4.0,
        ingrain_cache_logits=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=7,
    )
    with one_thread():
        IngrainTrainer(model=model, args=args, train_dataset=splits()["owner"], ingrainer=trained_key()).train()
    scratch.cleanup()
    return model.eval()


@functools.lru_cache(maxsize=None)
def independent_model(index: int):
    """A model trained without the key: its own init seed, its own data split (owner or attacker part of the split
    drawn with seed `index + 1`), and alternately the small and the default CNN width."""
    data = splits(index + 1)["owner" if index % 2 == 0 else "attacker"]
    return fit(cnn(seed=100 + index, small=index % 3 != 2), data, epochs=4, seed=index)
