"""What every `hf-ingrain attack` subcommand takes ([`AttackArguments`]), and what those of the attacks that train take
too ([`AttackTrainingArguments`]); an attack's own arguments are dataclasses in its file (see
[`~hf_ingrain.attacks.registry.AttackSpec`])."""

from dataclasses import dataclass, field


@dataclass
class AttackArguments:
    r"""
    What every attack takes: the target, the output folder and a seed.

    Args:
        model (`str`): the target, a folder written by `save_pretrained` or a Hub id.
        output (`str`): a new folder for the attacked model and its card.
        revision (`str`, *optional*): for a Hub id, the branch, tag or commit sha to attack.
        seed (`int`, *optional*, defaults to 0): seed of initialisation and training order.
    """

    model: str = field(metadata={"help": "The target: a folder written by save_pretrained, or a Hub id."})
    output: str = field(metadata={"help": "New folder for the attacked model and its card."})
    revision: str | None = field(default=None, metadata={"help": "For a Hub id: branch, tag or commit sha."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation and training order."})


@dataclass
class AttackTrainingArguments:
    r"""
    What the attacks that train (distill, finetune) take: the attacker's data and the optimisation.

    Args:
        data (`str`, *optional*): data set name, Hub id or folder; its `attacker` split is used (default: mnist-5k).
        epochs (`float`, *optional*, defaults to 20): passes over the attacker's data.
        max_steps (`int`, *optional*, defaults to -1): if positive, train this many steps instead.
        batch_size (`int`, *optional*): examples per step (default: 64 for distill, 100 for finetune).
        learning_rate (`float`, *optional*, defaults to 1e-3): learning rate.
    """

    data: str | None = field(default=None, metadata={"help": "Data set name, Hub id or folder (default: mnist-5k)."})
    epochs: float = field(default=20, metadata={"help": "Passes over the attacker's data."})
    max_steps: int = field(default=-1, metadata={"help": "If positive, train this many steps instead."})
    batch_size: int | None = field(default=None, metadata={"help": "Examples per step (distill 64, finetune 100)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate."})


def attacker_data(training: AttackTrainingArguments):
    """The `attacker` split of `training.data` (see [`~hf_ingrain.data.load_image_dataset`]; default: the embedded
    MNIST sample)."""
    from ..data import load_image_dataset

    return load_image_dataset(training.data)["attacker"]


def data_parameters(training: AttackTrainingArguments, data) -> dict:
    """What an attacked model's card records of the attacker's data."""
    return {"data": training.data or "mnist-5k", "num_examples": len(data)}
