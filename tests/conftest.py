import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing comes from the Hub in tests (hub tests use a loopback server)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

# Tiny models train fastest on one thread, and the multi-process tests share the 2 CI cores with this process.
torch.set_num_threads(1)
from datasets import Dataset

from hf_ingrain import WatermarkKey
from hf_ingrain.models import SmallCNNConfig, SmallCNNForImageClassification

NUM_LABELS = 10


def tiny_cnn(num_labels=NUM_LABELS, seed=0, **kwargs):
    torch.manual_seed(seed)
    config = SmallCNNConfig(num_labels=num_labels, hidden_channels=(8, 16), hidden_size=32, **kwargs)
    return SmallCNNForImageClassification(config)


def tiny_resnet(num_labels=NUM_LABELS, seed=0):
    from transformers import AutoModelForImageClassification, ResNetConfig

    torch.manual_seed(seed)
    config = ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=num_labels
    )
    return AutoModelForImageClassification.from_config(config)


def tiny_bert(num_labels=NUM_LABELS, vocab_size=100, seed=0):
    from transformers import AutoModelForSequenceClassification, BertConfig

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=num_labels,
    )
    return AutoModelForSequenceClassification.from_config(config)


def grayscale_processor():
    """An image processor that turns 8-bit grayscale PIL images back into `pixel_values` in [0, 1] with 1 channel (an
    `image-classification` pipeline converts every image to RGB first; this one converts it back). It counts its
    calls in `type(processor).calls`."""
    from PIL import Image
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    class GrayscaleProcessor(ViTImageProcessorPil):
        calls = 0

        def process_image(self, image, **kwargs):
            type(self).calls += 1
            return super().process_image(image.convert("L") if isinstance(image, Image.Image) else image, **kwargs)

    return GrayscaleProcessor(do_resize=False, do_normalize=False, do_rescale=True, rescale_factor=1 / 255)


def image_pipeline(model):
    """A deployed model: an `image-classification` pipeline over [`grayscale_processor`]."""
    from transformers import pipeline

    return pipeline("image-classification", model=model, image_processor=grayscale_processor(), device="cpu")


def local_tokenizer(texts=None, vocab_size=100):
    """A BERT tokenizer (WordPiece, `[CLS] ... [SEP]`, `[PAD]` = 0) trained here on `texts`: nothing from the Hub."""
    from hf_ingrain.data.text import wordpiece_tokenizer

    texts = texts or ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn"] * 20
    return wordpiece_tokenizer(texts, vocab_size=vocab_size, model_max_length=64)


def random_image_dataset(num_examples=64, shape=(1, 28, 28), num_labels=NUM_LABELS, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return Dataset.from_dict(
        {
            "pixel_values": torch.rand((num_examples, *shape), generator=generator).numpy(),
            "labels": torch.randint(0, num_labels, (num_examples,), generator=generator).numpy(),
        }
    ).with_format("torch")


def random_text_dataset(num_examples=64, length=12, vocab_size=100, num_labels=NUM_LABELS, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return Dataset.from_dict(
        {
            "input_ids": torch.randint(0, vocab_size, (num_examples, length), generator=generator).numpy(),
            "attention_mask": torch.ones((num_examples, length), dtype=torch.long).numpy(),
            "labels": torch.randint(0, num_labels, (num_examples,), generator=generator).numpy(),
        }
    ).with_format("torch")


@pytest.fixture(scope="session")
def embedded_splits():
    from hf_ingrain.data import load_image_dataset

    return load_image_dataset(seed=0)


@pytest.fixture(scope="session")
def small_key():
    """A quickly trained key (carriers only) for plumbing tests; not for verification strength."""
    key = WatermarkKey.generate(num_labels=NUM_LABELS, input_shape=(1, 28, 28), num_carriers=20, seed=0)
    # fits all 20 carriers (80 steps do, measured); no reference ingrainers: binomial test only, for plumbing tests
    key.train_ingrainer(num_steps=100, show_progress=False, num_reference_keys=0)
    return key


@pytest.fixture(scope="session")
def key_with_references(embedded_splits):
    """A briefly trained key with 3 reference ingrainers, so that the key-draw test runs (a key for plumbing: 50
    steps, not a strong test)."""
    key = WatermarkKey.generate(num_labels=NUM_LABELS, input_shape=(1, 28, 28), num_carriers=20, seed=0)
    key.train_ingrainer(benign_dataset=embedded_splits["owner"], num_steps=50, num_reference_keys=3,
                        show_progress=False)
    return key


@pytest.fixture(scope="module")
def mnist_teacher(embedded_splits, tmp_path_factory):
    """A tiny CNN trained briefly on the owner split (~83% test accuracy, measured): its predictions on digits are
    spread over the ten classes. One per test module: a distillation freezes its teacher."""
    from transformers import Trainer, TrainingArguments

    teacher = tiny_cnn(seed=0)
    overrides = dict(max_steps=60, per_device_train_batch_size=64, learning_rate=1e-2)
    args = TrainingArguments(**training_args(tmp_path_factory.mktemp("teacher"), **overrides))
    Trainer(model=teacher, args=args, train_dataset=embedded_splits["owner"]).train()
    return teacher.eval()


def training_args(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, per_device_train_batch_size=16,
        learning_rate=1e-3, max_steps=4, save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
    )
    return {**defaults, **kwargs}


# ------------------------------------------------------------------ Hub fixtures (a server on 127.0.0.1, tests/hub_server.py)
@pytest.fixture
def loopback_only(monkeypatch):
    """Record (and refuse) any connection that is not to 127.0.0.1."""
    import socket

    outside = []
    connect = socket.socket.connect

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] != "127.0.0.1":
            outside.append(address)
            raise ConnectionRefusedError(f"test tried to reach {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
    assert outside == []


@pytest.fixture
def loopback_hub(monkeypatch, loopback_only):
    """A Hub-compatible server on 127.0.0.1 that is the default endpoint of huggingface_hub and transformers."""
    import transformers.utils.hub
    from hub_server import HubServer

    monkeypatch.delenv("HF_TOKEN", raising=False)
    # transformers keeps one HfApi, with the endpoint of its first use; drop it so Trainer.push_to_hub sees this server
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
    with HubServer() as server:
        server.configure_client(monkeypatch)
        yield server
    assert server.errors == []


# ------------------------------------------------------------------ RFC 3161 timestamps (a TSA made with openssl, tests/local_tsa.py)
@pytest.fixture(scope="session")
def local_tsa(tmp_path_factory):
    """A time-stamping authority and its CA, made with `openssl` (what the claims' verifier trusts: `ca_file`)."""
    from local_tsa import LocalTSA

    return LocalTSA(tmp_path_factory.mktemp("tsa"), "Test TSA")


@pytest.fixture(scope="session")
def untrusted_tsa(tmp_path_factory):
    """Another TSA under its own CA: valid tokens, but from an authority the verifier did not choose to trust."""
    from local_tsa import LocalTSA

    return LocalTSA(tmp_path_factory.mktemp("rogue_tsa"), "Rogue TSA")
