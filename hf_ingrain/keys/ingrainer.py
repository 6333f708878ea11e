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
from ..losses import ingrainer_spread_loss, ingrainer_spread_loss_per_member
from ..models import SmallCNNConfig, SmallTextConfig, build_classifier, register_auto_classes
from ..processes import worker_pool
from ..suspects import forward_logits, model_logits
from .base import software_versions
from .batched import member_logits, run_members, stack_parameters, stacked_logits, stacks_on
from .inputs import benign_digest, carrier_batch, select
from .inputs import benign_inputs as benign_inputs_of

logger = logging.getLogger(__name__)


def subseed(seed: int, purpose: str) -> int:
    """A seed for one use of a key's seed (`"init"`, `"batches"`, `"reference:3"`): uses never share a random stream."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{purpose}".encode()).digest()[:8], "big") >> 2


def train_ingrainer(
    key, benign_dataset, architecture, num_steps, learning_rate, spread_weight, sharpness_weight, logit_std,
    batch_size, show_progress, num_reference_keys=0, model=None, processor=None, num_proc=None, device=None,
):
    """Trains a new ingrainer for `key`, and `num_reference_keys` reference ingrainers by the same procedure (see
    [`WatermarkKey.train_ingrainer`]), as one batched model where the architecture allows (see
    `hf_ingrain.keys.batched`), else one after another (in `num_proc` processes); returns the ingrainer, the references
    and the training record."""
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
    fitted = fit_ingrainers(
        [key] + reference_keys(key, num_reference_keys), options, show_progress=show_progress, num_proc=num_proc,
        device=device,
    )
    (ingrainer, carrier_accuracy, scale), references = fitted[0], [entry[0] for entry in fitted[1:]]
    training_info = {
        "num_steps": num_steps,
        "carrier_accuracy": carrier_accuracy,
        "spread": benign_inputs is not None and spread_weight > 0,
        "logit_scale": scale,
        "num_reference_keys": num_reference_keys,
        # what else decides every member besides its seed and the benign data (see `rederive_ingrainer`), and the
        # benign data itself by digest: a third party re-derives and compares the key (`hf_ingrain.keys.audit_key`)
        "benign_digest": benign_digest(benign_inputs, benign_labels),
        "versions": software_versions(),
        "recipe": {
            "architecture": "default" if architecture is None else "config",
            "learning_rate": learning_rate,
            "spread_weight": spread_weight,
            "sharpness_weight": sharpness_weight,
            "logit_std": logit_std,
            "batch_size": batch_size,
        },
    }
    if carrier_accuracy < 0.99:
        logger.warning("The ingrainer fits only %.1f%% of the carriers; raise `num_steps`.", 100 * carrier_accuracy)
    return ingrainer, references, training_info


def reference_keys(key, num_reference_keys: int) -> list:
    """The keys of `key`'s reference ingrainers: the same procedure from other seeds, fixed by the key's seed (keys the
    owner could have drawn instead); reference `i` has the seed `subseed(key.seed, f"reference:{i}")`."""
    return [
        type(key).generate(
            key.num_labels, key.input_shape, len(key.carriers), seed=subseed(key.seed, f"reference:{index}"),
            value_range=key.value_range, vocab_size=key.vocab_size,
            sequence_length=key.carriers.shape[1] if key.modality == "text" else 32,
            preprocessing=key.preprocessing,
        )
        for index in range(num_reference_keys)
    ]


def fit_ingrainers(keys, options, show_progress=False, num_proc=None, device=None, stacked=None) -> list:
    r"""
    [`fit_ingrainer`] for each of `keys`: the ingrainer of each, its carrier accuracy and its logit scale, in the order
    of `keys`. Each ingrainer is a function of its key's seed and `options` alone, however they are run.

    The default ingrainers (see `hf_ingrain.keys.batched.BATCHED_CLASSES`) train as one batched model on `device`
    (default: a GPU when there is one, else the CPU): stacked on a GPU, member-parallel on a CPU, where each equals
    its training alone by [`fit_ingrainer`] on one thread bit for bit. Any other architecture trains one after another,
    in `num_proc` spawned processes when it is above 1.

    Args:
        stacked (`bool`, *optional*): run the members stacked (`True`) or member-parallel (`False`) whatever the
            device; for tests and measurements.
    """
    architecture = options[0]
    if architecture is not None and not _batchable_architecture(keys[0], architecture):
        if num_proc is not None and num_proc > 1 and len(keys) > 1:
            return _fit_in_processes(keys, options, num_proc, show_progress)
        return [
            fit_ingrainer(key, *options, show_progress=show_progress and index == 0)
            for index, key in enumerate(tqdm(keys, desc="Ingrainers", disable=not show_progress or len(keys) == 1))
        ]
    if num_proc is not None and num_proc > 1:
        logger.info("`num_proc` is not needed by the default ingrainers: they train as one batched model.")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    models = [initial_ingrainer(key, architecture) for key in keys]
    (_, benign_inputs, benign_labels, num_steps, learning_rate, spread_weight, sharpness_weight, logit_std,
     batch_size) = options
    recipe = (benign_inputs, benign_labels, num_steps, learning_rate, spread_weight, sharpness_weight, batch_size)
    if stacked if stacked is not None else stacks_on(device):
        _optimise_stacked(keys, models, *recipe, device, show_progress)
        return [finish_ingrainer(key, model, benign_inputs, logit_std, device) for key, model in zip(keys, models)]

    def train(pair):
        key, model = pair
        model.to(device)
        optimise(key, model, *recipe, show_progress=False, forward=lambda batch: member_logits(model, batch))
        return finish_ingrainer(key, model, benign_inputs, logit_std, device)

    return run_members(train, list(zip(keys, models)), show_progress, description="Ingrainers (batched)")


def _batchable_architecture(key, architecture) -> bool:
    """Whether an ingrainer of `architecture` (a config) for `key` is one of the batched architectures."""
    return type(architecture) is (SmallCNNConfig if key.modality == "image" else SmallTextConfig)


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
    """One ingrainer for `key`'s carriers, from the key's seed, trained alone as a plain module; returns it (frozen),
    its carrier accuracy and the logit scale applied. The reference for every other way of training it."""
    # The ingrainer starts from the key's own randomness (its initialisation and dropout are seeded by the key),
    # and the caller's global random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        model = initial_ingrainer(key, architecture, fork=False)
        optimise(
            key, model, benign_inputs, benign_labels, num_steps, learning_rate, spread_weight, sharpness_weight,
            batch_size, show_progress,
        )
    return finish_ingrainer(key, model, benign_inputs, logit_std)


def initial_ingrainer(key, architecture, fork: bool = True):
    """`key`'s ingrainer before training: drawn after seeding torch's global random state with the key's seed (in a
    fork of that state, which the caller gets back untouched, unless `fork=False`: then the state stays seeded, for
    the dropout of the training that follows)."""
    with torch.random.fork_rng(devices=[], enabled=fork):
        torch.manual_seed(subseed(key.seed, "init"))
        model = default_ingrainer(key) if architecture is None else ingrainer_from(key, architecture)
    num_model_labels = getattr(getattr(model, "config", None), "num_labels", key.num_labels)
    if num_model_labels != key.num_labels:
        raise ValueError(f"The ingrainer predicts {num_model_labels} labels but the key has {key.num_labels}.")
    return model


def finish_ingrainer(key, model, benign_inputs, logit_std, device=None):
    """The trained ingrainer frozen on the CPU, its carrier accuracy, and its logits rescaled to `logit_std` on benign
    data (the scale applied is returned)."""
    model.eval()
    if device is not None:
        model.to(device)
    with torch.no_grad():
        carrier_accuracy = (forward_logits(model, carrier_batch(key)).argmax(-1).cpu() == key.carrier_labels)
        carrier_accuracy = carrier_accuracy.float().mean().item()
        scale = 1.0
        if benign_inputs is not None and logit_std is not None:
            std = forward_logits(model, select(benign_inputs, slice(0, 2048))).std(-1).mean().item()
            scale = logit_std / max(std, 1e-6)
            _scale_output_layer(model, scale)
    model.to("cpu")
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
    batch_size, show_progress, forward=None,
) -> None:
    """Fits `model` to the key's carriers and, with benign data, spreads its choices (see `train_ingrainer`).
    `forward(batch)` computes the model's logits (default `model_logits(model, batch)`)."""
    if forward is None:
        def forward(batch):
            return model_logits(model, batch)

    generator = torch.Generator().manual_seed(subseed(key.seed, "batches"))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    carriers = carrier_batch(key)
    num_benign = 0 if benign_inputs is None else len(benign_inputs[key.input_name])
    for _ in tqdm(range(num_steps), desc="Training ingrainer", disable=not show_progress):
        logits = forward(carriers)
        loss = F.cross_entropy(logits, key.carrier_labels.to(logits.device))
        if benign_inputs is not None and spread_weight > 0:
            index = torch.randint(0, num_benign, (min(batch_size, num_benign),), generator=generator)
            logits = forward(select(benign_inputs, index))
            loss = loss + spread_weight * ingrainer_spread_loss(
                logits,
                None if benign_labels is None else benign_labels[index].to(logits.device),
                key.num_labels,
                sharpness_weight,
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _optimise_stacked(
    keys, models, benign_inputs, benign_labels, num_steps, learning_rate, spread_weight, sharpness_weight, batch_size,
    device, show_progress,
) -> None:
    """[`optimise`] for every member at once, its parameters stacked (see `hf_ingrain.keys.batched`): each member on its
    own carriers and its own benign batches (drawn from its own seed), with its own Adam moments; the trained weights
    are written back into `models`."""
    template, num_labels = models[0], keys[0].num_labels
    shapes = {tuple(key.carriers.shape) for key in keys}
    if len(shapes) != 1:
        raise ValueError(f"Members trained as one batched model need carriers of one shape, got {sorted(shapes)}.")
    params = {name: value.requires_grad_() for name, value in stack_parameters(models, device).items()}
    optimizer = torch.optim.Adam(params.values(), lr=learning_rate)
    carriers = [carrier_batch(key) for key in keys]
    carriers = {name: torch.stack([batch[name] for batch in carriers]).to(device) for name in carriers[0]}
    carrier_labels = torch.stack([key.carrier_labels for key in keys]).to(device)
    generators = [torch.Generator().manual_seed(subseed(key.seed, "batches")) for key in keys]
    spread = benign_inputs is not None and spread_weight > 0
    if spread:
        num_benign = len(benign_inputs[keys[0].input_name])
        benign = {name: value.to(device) for name, value in benign_inputs.items()}
        labels = None if benign_labels is None else benign_labels.to(device)
    for _ in tqdm(range(num_steps), desc=f"Training {len(keys)} ingrainers", disable=not show_progress):
        logits = stacked_logits(template, params, carriers, shared=False)
        loss = F.cross_entropy(logits.flatten(0, 1), carrier_labels.flatten(), reduction="none")
        loss = loss.view(len(keys), -1).mean(1)
        if spread:
            index = torch.stack([
                torch.randint(0, num_benign, (min(batch_size, num_benign),), generator=generator)
                for generator in generators
            ]).to(device)
            logits = stacked_logits(template, params, select(benign, index), shared=False)
            loss = loss + spread_weight * ingrainer_spread_loss_per_member(
                logits, None if labels is None else labels[index], num_labels, sharpness_weight
            )
        optimizer.zero_grad()
        loss.sum().backward()  # each member's gradient is that of its own loss
        optimizer.step()
    with torch.no_grad():
        for index, model in enumerate(models):
            for name, parameter in model.named_parameters():
                parameter.copy_(params[name][index])


def _scale_output_layer(model, scale: float) -> None:
    """Multiplies the model's logits by `scale` by rescaling its last linear layer."""
    last_linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    last_linear.weight.mul_(scale)
    if last_linear.bias is not None:
        last_linear.bias.mul_(scale)
