"""Training the ingrainer of a [`WatermarkKey`]: from the key's own randomness, to fit the carriers and to spread its
choices over benign data (the objective is `hf_ingrain.losses.ingrainer_spread_loss`)."""

import copy
import hashlib
import logging

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PretrainedConfig

from ..data.preparation import prepare_dataset
from ..losses import ingrainer_spread_loss
from ..models import build_classifier, register_auto_classes
from ..processes import worker_pool
from ..suspects import collect_scores, forward_logits, inference_copy, model_logits
from .inputs import benign_inputs as benign_inputs_of
from .inputs import carrier_batch, select

logger = logging.getLogger(__name__)


def subseed(seed: int, purpose: str) -> int:
    """A seed for one use of a key's seed (`"init"`, `"batches"`, `"reference:3"`): uses never share a random stream."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{purpose}".encode()).digest()[:8], "big") >> 2


def train_ingrainer(
    key, benign_dataset, architecture, num_steps, learning_rate, spread_weight, sharpness_weight, logit_std,
    batch_size, show_progress, num_reference_keys=0, model=None, processor=None, num_proc=None,
):
    """Trains a new ingrainer for `key`, and `num_reference_keys` reference ingrainers by the same procedure (see
    [`WatermarkKey.train_ingrainer`]), in `num_proc` processes; returns the ingrainer, the references and the training
    record."""
    if model is not None:
        raise ValueError(
            "`train_ingrainer` takes the ingrainer's architecture, not a model: pass `architecture=model.config`. "
            "The ingrainer always starts from the key's own randomness; one started from trained weights shares "
            "the natural confusions of every classifier of the task, and models that never saw the key verify."
        )
    if architecture is not None and not isinstance(architecture, PretrainedConfig):
        raise ValueError(
            f"`architecture` must be a config (e.g. `ResNetConfig(...)` or `model.config`), got "
            f"{type(architecture).__name__}: the ingrainer starts from the key's own randomness, never from weights."
        )
    if num_reference_keys < 0:
        raise ValueError(f"`num_reference_keys` must be >= 0, got {num_reference_keys}.")
    if num_proc is not None and num_proc < 1:
        raise ValueError(f"`num_proc` must be >= 1 (or `None`: this process alone), got {num_proc}.")
    if benign_dataset is not None:
        benign_dataset = prepare_dataset(benign_dataset, key, processor)
    benign_inputs, benign_labels = benign_tensors(key, benign_dataset)
    options = (architecture, benign_inputs, benign_labels, num_steps, learning_rate, spread_weight, sharpness_weight,
               logit_std, batch_size)
    # The same procedure from other seeds, fixed by the key's seed: keys the owner could have drawn instead
    references = [
        type(key).generate(
            key.num_labels, key.input_shape, len(key.carriers), seed=subseed(key.seed, f"reference:{index}"),
            value_range=key.value_range, vocab_size=key.vocab_size,
            sequence_length=key.carriers.shape[1] if key.modality == "text" else 32,
            preprocessing=key.preprocessing,
        )
        for index in range(num_reference_keys)
    ]
    if num_proc is not None and num_proc > 1 and num_reference_keys > 0:
        fitted = _fit_in_processes([key] + references, options, num_proc, show_progress)
        (ingrainer, carrier_accuracy, scale), references = fitted[0], [entry[0] for entry in fitted[1:]]
    else:
        ingrainer, carrier_accuracy, scale = fit_ingrainer(key, *options, show_progress=show_progress)
        references = [
            fit_ingrainer(reference, *options, show_progress=False)[0]
            for reference in tqdm(references, desc="Reference ingrainers", disable=not show_progress)
        ]
    training_info = {
        "num_steps": num_steps,
        "carrier_accuracy": carrier_accuracy,
        "spread": benign_inputs is not None and spread_weight > 0,
        "logit_scale": scale,
        "num_reference_keys": num_reference_keys,
    }
    if carrier_accuracy < 0.99:
        logger.warning("The ingrainer fits only %.1f%% of the carriers; raise `num_steps`.", 100 * carrier_accuracy)
    return ingrainer, references, training_info


def _fit_in_processes(keys, options, num_proc, show_progress):
    """`fit_ingrainer` for each of `keys`, in `num_proc` processes (see `hf_ingrain.processes`); the results in the
    order of `keys`. Each ingrainer depends on its key's seed alone, so the order of the work does not change them
    (and with one thread per process they equal a one-thread training in this process, bit for bit)."""
    with worker_pool(num_proc, len(keys)) as (_, pool):
        tasks = [(key, options) for key in keys]
        return list(tqdm(
            pool.imap(_fit_task, tasks), total=len(tasks), desc=f"Ingrainers ({min(num_proc, len(keys))} processes)",
            disable=not show_progress,
        ))


def _fit_task(task):
    key, options = task
    return fit_ingrainer(key, *options, show_progress=False)


def fit_ingrainer(
    key, architecture, benign_inputs, benign_labels, num_steps, learning_rate, spread_weight, sharpness_weight,
    logit_std, batch_size, show_progress=False,
):
    """One ingrainer for `key`'s carriers, from the key's seed; returns it (frozen), its carrier accuracy and the
    logit scale applied."""
    # The ingrainer starts from the key's own randomness (its initialisation and dropout are seeded by the key),
    # and the caller's global random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(subseed(key.seed, "init"))
        model = default_ingrainer(key) if architecture is None else ingrainer_from(key, architecture)
        num_model_labels = getattr(getattr(model, "config", None), "num_labels", key.num_labels)
        if num_model_labels != key.num_labels:
            raise ValueError(f"The ingrainer predicts {num_model_labels} labels but the key has {key.num_labels}.")
        optimise(
            key, model, benign_inputs, benign_labels, num_steps, learning_rate, spread_weight, sharpness_weight,
            batch_size, show_progress,
        )
    model.eval()
    with torch.no_grad():
        carrier_accuracy = (forward_logits(model, carrier_batch(key)).argmax(-1) == key.carrier_labels)
        carrier_accuracy = carrier_accuracy.float().mean().item()
        scale = 1.0
        if benign_inputs is not None and logit_std is not None:
            std = forward_logits(model, select(benign_inputs, slice(0, 2048))).std(-1).mean().item()
            scale = logit_std / max(std, 1e-6)
            _scale_output_layer(model, scale)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, carrier_accuracy, scale


def ingrainer_from(key, architecture):
    """A freshly initialised ingrainer of `architecture` (a config), with the key's number of labels."""
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

    config = copy.deepcopy(architecture)
    if config.num_labels != key.num_labels:
        config.num_labels = key.num_labels
        config.id2label = {i: f"LABEL_{i}" for i in range(key.num_labels)}
        config.label2id = {name: i for i, name in config.id2label.items()}
    register_auto_classes()  # the architecture may be one of the package's small models
    auto = AutoModelForImageClassification if key.modality == "image" else AutoModelForSequenceClassification
    return auto.from_config(config)

def default_ingrainer(key):
    """The default ingrainer: a small CNN for images, a mean-pooled embedding classifier for text."""
    if key.modality == "image":
        return build_classifier("small_cnn", num_labels=key.num_labels, input_shape=key.input_shape)
    return build_classifier("small_text", num_labels=key.num_labels, vocab_size=key.vocab_size)


def benign_tensors(key, benign_dataset):
    """The benign inputs (a batch dict: with a text data set's mask, see `hf_ingrain.keys.inputs`) and labels the
    ingrainer is spread over (`None, None` without a data set)."""
    benign_inputs = benign_labels = None
    if benign_dataset is not None:
        benign_inputs, benign_labels = benign_inputs_of(key, benign_dataset)
        key.check_inputs(benign_inputs[key.input_name], "benign_dataset")
    else:
        logger.warning(
            "Training the ingrainer on carriers only: its choices on benign data may concentrate on a few classes, "
            "which weakens verification. Pass `benign_dataset=` to spread them."
        )
    return benign_inputs, benign_labels


def optimise(
    key, model, benign_inputs, benign_labels, num_steps, learning_rate, spread_weight, sharpness_weight,
    batch_size, show_progress,
) -> None:
    """Fits `model` to the key's carriers and, with benign data, spreads its choices (see `train_ingrainer`)."""
    generator = torch.Generator().manual_seed(subseed(key.seed, "batches"))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    carriers = carrier_batch(key)
    num_benign = 0 if benign_inputs is None else len(benign_inputs[key.input_name])
    for _ in tqdm(range(num_steps), desc="Training ingrainer", disable=not show_progress):
        loss = F.cross_entropy(model_logits(model, carriers), key.carrier_labels)
        if benign_inputs is not None and spread_weight > 0:
            index = torch.randint(0, num_benign, (min(batch_size, num_benign),), generator=generator)
            loss = loss + spread_weight * ingrainer_spread_loss(
                model_logits(model, select(benign_inputs, index)),
                None if benign_labels is None else benign_labels[index],
                key.num_labels,
                sharpness_weight,
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _scale_output_layer(model, scale: float) -> None:
    """Multiplies the model's logits by `scale` by rescaling its last linear layer."""
    last_linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    last_linear.weight.mul_(scale)
    if last_linear.bias is not None:
        last_linear.bias.mul_(scale)


def query_ingrainers(models: list, queries, batch_size: int = 256) -> list[torch.Tensor]:
    """The logits `(n, K)` of each of a key's ingrainers on `queries` (a data set, read in order)."""
    return [collect_scores(inference_copy(model), queries, batch_size=batch_size)[0] for model in models]
