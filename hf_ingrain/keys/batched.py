r"""
A key's ingrainers as one batched model: the ingrainer and its reference ingrainers share one architecture and one
recipe and differ only in their seeds, so they are trained and queried together.

Two ways to run the members together, chosen by the device:

- **Stacked** (GPU, or any device but the CPU): the members' parameters stacked along a first dimension, one forward
  pass for all of them: grouped convolutions (`groups = members`) and batched matrix products for
  [`SmallCNNForImageClassification`], a gather from the stacked embedding tables for
  [`SmallTextForSequenceClassification`]; one Adam over the stacked tensors (Adam works element by element, so each
  member gets its own moments), each member's loss on its own carriers and its own benign batches. A member's result
  equals its training alone up to float rounding (a grouped convolution sums in another order).
- **Member-parallel** (CPU): a grouped convolution runs a member 1.6 to 3.4 times slower than its plain convolution on
  a CPU (measured in `docs/fast_keys/README.md`), so there each member runs its own plain operations, on one thread,
  and the members are shared out to `torch.get_num_threads()` worker threads. Small models use intra-op threads
  poorly (what made `num_proc` processes pay; threads need no spawned processes). Each member is computed on one
  thread whatever the number of workers, so it equals, bit for bit, its training alone on one thread: a key does
  not depend on the number of threads, and any member can be re-derived from its seed and the recipe.

[`member_logits`] is the one member's forward both use on a CPU: the default CNN's operations, reordered where the
result cannot change (pooling before the ReLU, max pooling on a channels-last copy) and the first convolution (one
input channel) computed as a matrix product, with the gradient of the convolution itself. On this package's
machines it equals `model(pixel_values).logits` and its gradients bit for bit (`tests/test_batched_keys.py`; another
BLAS could round the 9-term product otherwise), and it trains the default ingrainer faster
(`docs/fast_keys/README.md`).
"""

import concurrent.futures
import logging

import torch
import torch.nn.functional as F

from ..models import SmallCNNForImageClassification, SmallTextForSequenceClassification
from ..suspects import model_logits

logger = logging.getLogger(__name__)

BATCHED_CLASSES = (SmallCNNForImageClassification, SmallTextForSequenceClassification)
"""The architectures trained and queried as one batched model (the default ingrainers); any other architecture is
trained member after member."""


def can_batch(models: list) -> bool:
    """Whether `models` are one batchable architecture (see `BATCHED_CLASSES`) with one configuration."""
    if not models or type(models[0]) not in BATCHED_CLASSES:
        return False
    config = models[0].config.to_diff_dict()
    return all(type(model) is type(models[0]) and model.config.to_diff_dict() == config for model in models[1:])


def stacks_on(device) -> bool:
    """Whether the members run stacked on `device` (any device but the CPU, see the module docstring)."""
    return torch.device(device).type != "cpu"


# ------------------------------------------------------------------------------------------ one member, fast on a CPU
class _SingleChannelConv(torch.autograd.Function):
    """A 3x3 convolution (padding 1) of one-channel images as a matrix product of their 3x3 patches with the filters;
    its backward is the convolution's own. The output is laid out channels-last (the pooling that follows is faster
    there); its values are those of the convolution (a dot product of 9 terms, summed in order)."""

    @staticmethod
    def forward(ctx, pixels, weight, bias):
        ctx.save_for_backward(pixels, weight)
        num_images, _, height, width = pixels.shape
        padded = F.pad(pixels, (1, 1, 1, 1)).contiguous()
        patches = padded.as_strided(  # (image, row, column, 3 x 3 patch), copied once into (positions, 9)
            (num_images, height, width, 3, 3), (padded.stride(0), width + 2, 1, width + 2, 1)
        ).reshape(num_images * height * width, 9)
        output = torch.addmm(bias, patches, weight.reshape(len(weight), 9).t())
        return output.view(num_images, height, width, len(weight)).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_output):
        pixels, weight = ctx.saved_tensors
        grad_pixels, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad_output.contiguous(), pixels, weight, [len(weight)], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]],
        )
        return grad_pixels, grad_weight, grad_bias


def _pool(hidden: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling; on a CPU through a channels-last copy (several times faster there; the maximum and the position
    it is taken from are the same in both layouts, so values and gradients are too)."""
    if hidden.device.type == "cpu":
        hidden = hidden.contiguous(memory_format=torch.channels_last)
    return F.max_pool2d(hidden, 2)


def _cnn_member_logits(model, pixel_values: torch.Tensor) -> torch.Tensor:
    config, x = model.config, pixel_values
    if config.standardize_inputs:
        x = (x - x.mean((1, 2, 3), keepdim=True)) / (x.std((1, 2, 3), keepdim=True) + 1e-5)
    if x.device.type == "cpu" and x.shape[1] == 1 and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"):
        hidden = _SingleChannelConv.apply(x, model.conv1.weight, model.conv1.bias)
    else:
        hidden = model.conv1(x)
    # max_pool(relu(h)) == relu(max_pool(h)), values and gradients: the ReLU runs on a quarter of the values
    hidden = F.relu(_pool(hidden))
    hidden = F.relu(_pool(model.conv2(hidden.contiguous())))
    return model.classifier(F.relu(model.fc(hidden.flatten(1))))


def member_logits(model, batch: dict) -> torch.Tensor:
    """The logits of one ingrainer on a dict batch (gradients flow): `model_logits(model, batch)`, computed faster for
    the default CNN on a CPU (see the module docstring)."""
    if isinstance(model, SmallCNNForImageClassification):
        return _cnn_member_logits(model, batch["pixel_values"].to(model.conv1.weight.device))
    return model_logits(model, batch)


# ------------------------------------------------------------------------------------------ the stacked members
def stack_parameters(models: list, device=None) -> dict:
    """The members' parameters stacked along a new first dimension (a copy, on `device`), by parameter name."""
    names = [name for name, _ in models[0].named_parameters()]
    return {
        name: torch.stack([dict(model.named_parameters())[name].detach() for model in models]).to(device)
        for name in names
    }


def _stacked_linear(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`(M, N, in) -> (M, N, out)` with each member's own `nn.Linear` weight `(M, out, in)` and bias `(M, out)`."""
    return torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))


def _cnn_stacked_logits(params: dict, config, pixel_values: torch.Tensor, shared: bool) -> torch.Tensor:
    conv1, conv2 = params["conv1.weight"], params["conv2.weight"]
    members = len(conv1)
    x = pixel_values
    if config.standardize_inputs:
        x = (x - x.mean((-3, -2, -1), keepdim=True)) / (x.std((-3, -2, -1), keepdim=True) + 1e-5)
    if shared:  # (N, C, H, W): every member's filters on the same images, one convolution
        hidden = F.conv2d(x, conv1.flatten(0, 1), params["conv1.bias"].flatten(), padding=1)
    else:  # (M, N, C, H, W): each member on its own images, the members side by side as channel groups
        x = x.transpose(0, 1).flatten(1, 2)
        hidden = F.conv2d(x, conv1.flatten(0, 1), params["conv1.bias"].flatten(), padding=1, groups=members)
    hidden = F.relu(F.max_pool2d(hidden, 2))
    hidden = F.conv2d(hidden, conv2.flatten(0, 1), params["conv2.bias"].flatten(), padding=1, groups=members)
    hidden = F.relu(F.max_pool2d(hidden, 2))  # (N, M * C2, H / 4, W / 4)
    hidden = hidden.unflatten(1, (members, -1)).flatten(2).transpose(0, 1)  # (M, N, C2 * H * W / 16)
    hidden = F.relu(_stacked_linear(hidden, params["fc.weight"], params["fc.bias"]))
    return _stacked_linear(hidden, params["classifier.weight"], params["classifier.bias"])


def _text_stacked_logits(params: dict, input_ids: torch.Tensor, attention_mask, shared: bool) -> torch.Tensor:
    table = params["embeddings.weight"]  # (M, V, H)
    if shared:  # (N, L)
        embedded = table[:, input_ids]
    else:  # (M, N, L)
        embedded = table[torch.arange(len(table), device=table.device)[:, None, None], input_ids]
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = attention_mask.unsqueeze(-1).to(embedded.dtype)
    pooled = (embedded * mask).sum(-2) / mask.sum(-2).clamp(min=1.0)  # (M, N, H)
    hidden = torch.tanh(_stacked_linear(pooled, params["hidden.weight"], params["hidden.bias"]))
    return _stacked_linear(hidden, params["classifier.weight"], params["classifier.bias"])


def stacked_logits(template, params: dict, batch: dict, shared: bool) -> torch.Tensor:
    """The logits `(M, N, K)` of the stacked members `params` (see [`stack_parameters`]) of `template`'s architecture:
    on the same inputs (`shared`, tensors `(N, ...)`) or each member on its own (tensors `(M, N, ...)`)."""
    if isinstance(template, SmallCNNForImageClassification):
        return _cnn_stacked_logits(params, template.config, batch["pixel_values"], shared)
    return _text_stacked_logits(params, batch["input_ids"], batch.get("attention_mask"), shared)


# ------------------------------------------------------------------------------------------ running members
def run_members(work, items: list, show_progress: bool = False, description: str = "Ingrainers") -> list:
    """`work(item)` for each item, on `torch.get_num_threads()` worker threads of one intra-op thread each (see the
    module docstring); the results in the order of `items`. `work` must not use torch's global random state."""
    from tqdm.auto import tqdm

    threads = torch.get_num_threads()
    workers = max(1, min(threads, len(items)))
    progress = tqdm(total=len(items), desc=description, disable=not show_progress)

    def run(item):
        torch.set_num_threads(1)  # this thread's OpenMP and BLAS, for the operations it calls
        result = work(item)
        progress.update()
        return result

    try:
        torch.set_num_threads(1)
        if workers == 1:
            return [run(item) for item in items]
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ingrainer") as pool:
            return list(pool.map(run, items))
    finally:
        torch.set_num_threads(threads)
        progress.close()
