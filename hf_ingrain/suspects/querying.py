"""Querying a model: unwrapped, with the inputs it reads, in its dtype and on its device (see
[`hf_ingrain.suspects`])."""

import copy
import inspect
import logging
from contextlib import contextmanager

import torch
from torch import nn

from ..data import iterate_batches
from .loading import resolve_model
from .scores import as_score_matrix

logger = logging.getLogger(__name__)

# Inputs that travel with a model's main input when its forward takes them.
COMPANION_INPUTS = ("attention_mask", "token_type_ids", "pixel_mask")
KNOWN_MAIN_INPUTS = ("pixel_values", "input_ids", "input_values", "input_features")


def unwrap_model(model: nn.Module, peft: bool = True) -> nn.Module:
    """`model` without its accelerate / DDP / DataParallel / DeepSpeed / `torch.compile` wrappers and, with `peft`,
    its PEFT wrapper (the transformers model inside, adapters included)."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model, keep_torch_compile=not peft)
    if peft and callable(getattr(model, "get_base_model", None)):
        model = model.get_base_model()
    return model


def model_input_names(model: nn.Module, processor=None) -> list[str] | None:
    r"""
    The batch keys `model` reads: its `main_input_name`, and its processor's `model_input_names` or, without a
    processor, the companions its forward takes (`attention_mask`, `token_type_ids`, `pixel_mask`).

    A plain `nn.Module` without `main_input_name` reads the known main inputs its forward names; one that names none
    (`forward(*args, **kwargs)`) gets `None`: every key of the batch but `labels`.
    """
    base = unwrap_model(model)
    try:
        parameters = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        parameters = {}
    main = getattr(base, "main_input_name", None)
    if main is None:
        found = [name for name in KNOWN_MAIN_INPUTS if name in parameters]
        if not found:
            return None
        main = found[0]
    names = [main]
    processor_names = getattr(processor, "model_input_names", None)
    companions = processor_names if processor_names is not None else [n for n in COMPANION_INPUTS if n in parameters]
    names += [name for name in companions if name not in names]
    return names


def _dtype_and_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    tensors = list(model.parameters()) or list(model.buffers())
    floating = [t for t in tensors if t.is_floating_point()]
    dtype = floating[0].dtype if floating else torch.float32
    device = tensors[0].device if tensors else torch.device("cpu")
    return dtype, device


def model_inputs(model: nn.Module, batch: dict, input_names: list[str] | None = None) -> dict:
    """The keys of `batch` that `model` reads (see [`model_input_names`]), on its device, floating ones in its dtype."""
    names = input_names if input_names is not None else model_input_names(model)
    dtype, device = _dtype_and_device(unwrap_model(model))
    selected = {k: v for k, v in batch.items() if (k in names if names is not None else k != "labels")}
    if names is not None and names[0] not in selected:
        raise ValueError(
            f"The model reads `{names[0]}` but the batch has {sorted(batch)}: give the data the model's input column."
        )
    return {
        k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) if torch.is_tensor(v) else v
        for k, v in selected.items()
    }


def model_logits(model: nn.Module, batch: dict, input_names: list[str] | None = None) -> torch.Tensor:
    """Logits of `model` on a dict batch (only the inputs it reads; gradients flow). The model is called as given, so
    a DDP-wrapped model still synchronises its gradients."""
    outputs = model(**model_inputs(model, batch, input_names))
    if isinstance(outputs, torch.Tensor):  # a plain module's bare logits (indexing them would take the first row)
        return outputs
    return outputs["logits"] if isinstance(outputs, dict) else outputs[0]


@contextmanager
def evaluating(model):
    """`model` in eval mode for the block (no dropout, frozen batch norm), then back in the mode it was in."""
    training = getattr(model, "training", False)
    if training:
        model.eval()
    try:
        yield model
    finally:
        if training:
            model.train()


def inference_copy(model: nn.Module) -> nn.Module:
    r"""
    `model` for repeated inference without gradients: a copy with its convolution weights laid out channels-last, which
    runs the default ingrainer 2 to 3 times faster on a CPU (same logits up to float rounding), or `model` itself when
    it has no 2-d convolution. The model passed in is left as it was: a key saves its ingrainers with safetensors,
    which takes contiguous tensors only.
    """
    if not any(isinstance(module, nn.Conv2d) for module in model.modules()):
        return model
    return copy.deepcopy(model).to(memory_format=torch.channels_last)


@torch.no_grad()
def forward_logits(model: nn.Module, batch: dict, input_names: list[str] | None = None) -> torch.Tensor:
    """[`model_logits`] without gradients."""
    return model_logits(model, batch, input_names)


def _is_pipeline(model) -> bool:
    from transformers import Pipeline

    return isinstance(model, Pipeline)


def _pipeline_scorer(pipeline, top_k):
    """Wraps an image-classification pipeline: pixel batches -> PIL images -> its `[{label, score}]` lists."""
    import numpy as np
    from PIL import Image

    if getattr(pipeline, "task", "image-classification") != "image-classification":
        raise ValueError("Only image-classification pipelines can be queried; pass the model itself for text.")
    config = pipeline.model.config
    label_to_index = {str(k): int(v) for k, v in (config.label2id or {}).items()}
    label_to_index.update({str(name): int(i) for i, name in (config.id2label or {}).items()})

    def score(batch):
        pixels = batch["pixel_values"].float()
        if pixels.ndim != 4 or pixels.shape[1] not in (1, 3):
            raise ValueError(f"A pipeline needs image batches of shape (B, 1 or 3, H, W), got {tuple(pixels.shape)}.")
        if pixels.min() < -1e-6 or pixels.max() > 1 + 1e-6:
            raise ValueError(
                "A pipeline takes images, so the queries must hold pixel values in [0, 1]; these are normalised. "
                "Verify with un-normalised data, or query the model itself."
            )
        arrays = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        images = [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else np.ascontiguousarray(a)) for a in arrays]
        kwargs = {"top_k": top_k} if top_k else {}
        return pipeline(images, batch_size=len(images), **kwargs)

    return score, config.num_labels, label_to_index


@torch.no_grad()
def collect_scores(
    model,
    dataset,
    input_names: list[str] | None = None,
    batch_size: int = 256,
    show_progress: bool = False,
    num_labels: int | None = None,
    top_k: int | None = None,
):
    r"""
    Runs `model` over `dataset` and returns its scores and the labels (if any).

    Args:
        model (`nn.Module`, `str`, `transformers.Pipeline` or callable):
            A model, a local folder or Hub id (through [`load_model`]), an `image-classification` pipeline (a
            deployed model: it receives PIL images and returns its top-k `{label, score}` lists), or a callable
            mapping a dict batch to scores (see [`~hf_ingrain.scores.as_score_matrix`] for what it may return).
        dataset: examples with the model's inputs (and optionally `labels`).
        input_names (`list[str]`, *optional*): the columns sent to the model (default: those it reads, see
            [`model_input_names`]; for a callable, every column but `labels`).
        batch_size (`int`, *optional*, defaults to 256): queries per call.
        show_progress (`bool`, *optional*, defaults to `False`): show a progress bar.
        num_labels (`int`, *optional*): number of classes, needed to read labels or top-k outputs of a callable.
        top_k (`int`, *optional*): passed to a pipeline as its `top_k` (else the pipeline's default, 5).

    Returns:
        `tuple[torch.Tensor, torch.Tensor | None]`: scores of shape `(n, num_labels)` (`-inf` where the suspect
        exposes no score) and labels.
    """
    from tqdm.auto import tqdm

    model = resolve_model(model)
    label_to_index, was_training = None, False
    if _is_pipeline(model):
        score, num_labels, label_to_index = _pipeline_scorer(model, top_k)
        names = ["pixel_values"]
    elif isinstance(model, nn.Module):
        was_training = model.training  # queried in eval mode, handed back as it came
        model.eval()
        names = input_names if input_names is not None else model_input_names(model)

        def score(batch):
            logits = forward_logits(model, batch, names).float().cpu()
            if not torch.isfinite(logits).all():  # a model has a score for every class: non-finite ones are a fault
                bad = int((~torch.isfinite(logits)).any(-1).sum())
                raise ValueError(
                    f"The model returned NaN or infinite logits for {bad} of {len(logits)} queries in a batch: it is "
                    "broken for these inputs (check its dtype and its weights); the test needs a score for every query."
                )
            return logits

    elif callable(model):
        names, score = input_names, model
    else:
        raise ValueError(f"`model` must be a model, a path, a pipeline or a callable, got {type(model).__name__}.")
    columns = None if names is None else list(names) + ["labels"]
    scores, labels = [], []
    try:
        for batch in tqdm(iterate_batches(dataset, batch_size, columns), desc="Querying", disable=not show_progress):
            queries = {k: v for k, v in batch.items() if k != "labels"}
            scores.append(as_score_matrix(score(queries), num_labels, label_to_index))
            if "labels" in batch:
                labels.append(batch["labels"])
    finally:
        if was_training:
            model.train()
    if not scores:
        raise ValueError("The verification data set is empty.")
    return torch.cat(scores), (torch.cat(labels) if labels else None)
