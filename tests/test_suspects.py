"""The one way in to a suspect (hf_ingrain.suspects): one loading policy, one query function for every kind of model."""

import json
import os

import pytest
import torch
from conftest import NUM_LABELS, random_image_dataset, tiny_cnn
from datasets import Dataset
from safetensors.torch import save_file
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from hf_ingrain import WatermarkKey, verify
from hf_ingrain.suspects import collect_scores, load_model, load_suspect, model_input_names, selected_files


def _logits(model, pixels):
    with torch.no_grad():
        return model(pixel_values=pixels).logits.float()


# ----------------------------------------------------------------------------------------------- querying
def test_a_peft_model_is_queried_through_its_adapters():
    from peft import LoraConfig, get_peft_model

    base = tiny_cnn(seed=0)
    reference = tiny_cnn(seed=0)  # the same weights, without adapters
    peft_model = get_peft_model(base, LoraConfig(target_modules=["fc", "classifier"], r=2))
    with torch.no_grad():  # LoRA starts as the identity; move it so that the adapters change the outputs
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    data = random_image_dataset(32)
    pixels = data[:]["pixel_values"]
    # PeftModel.forward(*args, **kwargs) names no input: the inputs come from the model inside (main_input_name)
    assert model_input_names(peft_model) == ["pixel_values"]
    scores, labels = collect_scores(peft_model, data)
    assert torch.allclose(scores, _logits(peft_model, pixels), atol=1e-6)
    assert not torch.allclose(scores, _logits(reference, pixels), atol=1e-3)  # the adapters were applied
    assert torch.equal(labels, data[:]["labels"])


def test_an_audio_model_gets_its_input_values():
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        num_labels=NUM_LABELS, classifier_proj_size=8,
    )
    model = Wav2Vec2ForSequenceClassification(config).eval()
    waves = torch.randn(12, 400, generator=torch.Generator().manual_seed(1))
    data = Dataset.from_dict({"input_values": waves.numpy(), "labels": [i % NUM_LABELS for i in range(12)]})
    scores, _ = collect_scores(model, data.with_format("torch"), batch_size=5)
    with torch.no_grad():
        expected = model(input_values=waves).logits
    assert torch.allclose(scores, expected, atol=1e-5)


def test_a_bf16_suspect_takes_float32_queries(small_key):
    data = random_image_dataset(64)
    full = tiny_cnn(seed=2)
    half = tiny_cnn(seed=2).to(torch.bfloat16)
    scores, _ = collect_scores(half, data)
    assert scores.dtype == torch.float32
    # bf16 keeps ~3 significant digits: the logits agree to that precision, and so do nearly all top classes
    assert torch.allclose(scores, _logits(full, data[:]["pixel_values"]), atol=0.1, rtol=0.05)
    half_result, full_result = verify(half, small_key, data), verify(full, small_key, data)
    assert abs(half_result.num_agreements - full_result.num_agreements) <= 6  # a few runner-ups within bf16 noise


def test_wrapped_models_are_queried_like_the_model_inside():
    model = tiny_cnn(seed=3)
    data = random_image_dataset(16)
    expected, _ = collect_scores(model, data)
    wrapped, _ = collect_scores(nn.DataParallel(model), data)  # no GPU: DataParallel runs the module itself
    assert torch.equal(wrapped, expected)


class _KeywordsOnly(nn.Module):
    """A model whose forward names no input: it gets every column but the labels."""

    def __init__(self):
        super().__init__()
        self.inner = tiny_cnn(seed=4)

    def forward(self, **batch):
        assert "labels" not in batch
        return ImageClassifierOutput(logits=self.inner(pixel_values=batch["pixel_values"]).logits)


def test_a_model_that_names_no_input_gets_every_column_but_the_labels():
    model = _KeywordsOnly()
    data = random_image_dataset(8)
    assert model_input_names(model) is None
    scores, _ = collect_scores(model, data)
    assert torch.allclose(scores, _logits(model.inner, data[:]["pixel_values"]))


def test_a_batch_without_the_model_input_is_a_clear_error():
    with pytest.raises(ValueError, match="reads `pixel_values`.*input column"):
        collect_scores(tiny_cnn(), Dataset.from_dict({"input_ids": [[1, 2]], "labels": [0]}).with_format("torch"))


# ----------------------------------------------------------------------------------------------- loading
def _folder_with(tmp_path, name, config_edit=None, weights="safetensors"):
    model = tiny_cnn(seed=5)
    folder = tmp_path / name
    model.save_pretrained(folder)
    if weights == "pickle":
        os.remove(folder / "model.safetensors")
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    if config_edit:
        config = json.loads((folder / "config.json").read_text())
        config_edit(config)
        (folder / "config.json").write_text(json.dumps(config))
    return model, folder


def test_a_local_folder_loads_bit_identical_and_says_where_it_came_from(tmp_path):
    model, folder = _folder_with(tmp_path, "model")
    suspect = load_suspect(folder)
    assert suspect.folder == str(folder) and suspect.commit_sha is None and "model.safetensors" in suspect.files
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, suspect.model.state_dict()[name]), name
    assert not suspect.model.training


def test_pickle_weights_are_refused_unless_allowed(tmp_path, caplog):
    model, folder = _folder_with(tmp_path, "pickled", weights="pickle")
    with pytest.raises(ValueError, match=r"pickle weights only \(pytorch_model.bin\).*allow_pickle=True"):
        load_model(folder)
    loaded = load_model(folder, allow_pickle=True)
    assert "UNSAFE" in caplog.text
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)


@pytest.mark.parametrize("custom", ["auto_map", "unknown_model_type"])
def test_a_folder_that_needs_repository_code_is_refused_before_anything_runs(tmp_path, custom):
    marker = tmp_path / "code_ran"

    def edit(config):
        if custom == "auto_map":
            config["auto_map"] = {"AutoModelForImageClassification": "modeling_evil.EvilModel"}
        else:
            config["model_type"] = "evil_net"

    _, folder = _folder_with(tmp_path, "custom", edit)
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(ValueError, match="custom code.*never runs code"):
        load_model(folder)
    assert not marker.exists()


def test_a_trainer_folder_without_a_model_points_to_its_checkpoints(tmp_path):
    (tmp_path / "run" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-10").mkdir()
    with pytest.raises(ValueError, match=r"save_model\(\)`.*checkpoint-10"):
        load_model(tmp_path / "run")
    with pytest.raises(ValueError, match="neither a local folder nor a Hub id"):
        load_model(tmp_path / "missing")
    _, folder = _folder_with(tmp_path, "model")
    with pytest.raises(ValueError, match="Hub ids only"):
        load_model(folder, revision="main")


def test_only_top_level_safe_files_are_selected():
    files = [
        "config.json", "model.safetensors", "README.md", "preprocessor_config.json", "tokenizer.json",
        "training_args.bin", "optimizer.pt", "pytorch_model.bin", "modeling_evil.py", "trainer_state.json",
        "checkpoint-5/model.safetensors", "checkpoint-5/config.json", "watermark.json",
    ]
    assert selected_files(files) == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"
    ]
    assert "pytorch_model.bin" in selected_files(files, allow_pickle=True)
    assert "training_args.bin" not in selected_files(files, allow_pickle=True)


def test_the_attacks_and_the_recipes_use_the_same_loader(tmp_path):
    from hf_ingrain import DistillationConfig, DistillationTrainer

    _, folder = _folder_with(tmp_path, "pickled", weights="pickle")
    args = DistillationConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match="pickle weights only"):
        DistillationTrainer(model=tiny_cnn(), teacher=str(folder), args=args, train_dataset=random_image_dataset(8))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "stray.safetensors"))  # a file is not a model folder
    with pytest.raises(ValueError, match="neither a local folder"):
        load_model(tmp_path / "stray.safetensors")


def test_inference_copy_gives_the_same_logits_and_leaves_the_ingrainer_saveable(tmp_path):
    # IngrainTrainer and verify() run the key's convolutional ingrainers channels-last (2-3x faster on a CPU); the
    # key's own modules stay contiguous, so the key still saves (safetensors takes contiguous tensors only).
    from hf_ingrain import IngrainConfig, IngrainTrainer
    from hf_ingrain.models import build_classifier
    from hf_ingrain.suspects import forward_logits, inference_copy

    key = WatermarkKey.generate(10, (1, 28, 28), num_carriers=10, seed=0)
    key.train_ingrainer(num_steps=3, num_reference_keys=0, show_progress=False)
    fast = inference_copy(key.ingrainer)
    assert fast is not key.ingrainer and fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    batch = {"pixel_values": torch.rand(8, 1, 28, 28)}
    assert torch.allclose(forward_logits(fast, batch), forward_logits(key.ingrainer, batch), atol=1e-5)
    trainer = IngrainTrainer(model=build_classifier("vit", input_shape=(1, 28, 28)), ingrainer=key,
                             args=IngrainConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none"))
    assert trainer.ingrainer.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert key.ingrainer.conv1.weight.is_contiguous()
    key.save(tmp_path / "key")
    text_model = build_classifier("small_text", vocab_size=50)
    assert inference_copy(text_model) is text_model  # nothing to gain without a 2-d convolution


def test_a_plain_module_that_returns_bare_logits_gives_them_all():
    # a plain nn.Module returns a tensor, not a ModelOutput or tuple: its logits are the whole tensor, not its first row
    from hf_ingrain.suspects.querying import model_logits

    class Bare(torch.nn.Module):
        def forward(self, pixel_values):
            return pixel_values.flatten(1)[:, :10]

    batch = {"pixel_values": torch.arange(4 * 16, dtype=torch.float32).reshape(4, 1, 4, 4)}
    assert model_logits(Bare(), batch).shape == (4, 10)
