"""The registry of attacks: each attack declares itself once, in its own file, as `ATTACK = AttackSpec(...)` next to
its class, and the `hf-ingrain attack` subcommands ([`hf_ingrain.cli.attack`]) and the benchmark's columns
([`hf_ingrain.benchmark`]) are built from those declarations. Adding an attack is one file of `hf_ingrain/attacks/`
(and its tests): the registry finds it there.

The registry reads every module of `hf_ingrain.attacks` the first time it is asked (`attack_specs()`), in the order
of their file names, and [`register_attack`] adds one from elsewhere (a test's toy attack, a user's own).
"""

import functools
import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BenchmarkColumns:
    r"""
    A family of benchmark columns: the names that `pattern` matches in full, each one run of the attack at the
    benchmark's scale.

    Args:
        pattern (`str`): a regular expression; a column's name must match it in full, and its groups are the attack's
            arguments (in `r"prune_(\d+)"`, the share of the weights pruned, in percent).
        run (`Callable[[re.Match, nn.Module, BenchmarkContext], nn.Module]`): the attacked model, from the name's
            match, the target and the benchmark's [`BenchmarkContext`].
        names (`tuple[str]`, *optional*): the family's columns that the benchmark lists (`OPTIONAL_ATTACKS` and the
            help of `--attacks`); without `grammar`, the only names it accepts.
        grammar (`str`, *optional*): how the family's names read, shown in errors (`"ensemble_<2|3>"`); with it, the
            family accepts every name `pattern` matches, not only `names`.
        check (`Callable[[re.Match], None]`, *optional*): raises a `ValueError` naming the fix for a name `pattern`
            matches but the attack cannot run (a query budget of 0).
    """

    pattern: str
    run: Callable
    names: tuple[str, ...] = ()
    grammar: str | None = None
    check: Callable | None = None

    def __post_init__(self):
        if not self.names and self.grammar is None:
            raise ValueError(f"Columns {self.pattern!r}: list their `names`, or give the `grammar` of an open family.")
        unmatched = [name for name in self.names if not re.fullmatch(self.pattern, name)]
        if unmatched:
            raise ValueError(f"Columns {unmatched} do not match their family's pattern {self.pattern!r}.")

    @property
    def compiled(self) -> re.Pattern:
        return re.compile(self.pattern)

    def match(self, name: str) -> re.Match | None:
        """The match of `name` if it is a column of this family, else `None`."""
        if self.grammar is None and name not in self.names:
            return None
        return re.fullmatch(self.pattern, name)


@dataclass(frozen=True)
class AttackSpec:
    r"""
    One attack, declared once in its file as `ATTACK = AttackSpec(...)`: what its `hf-ingrain attack` subcommand
    takes and does, and its benchmark columns.

    Args:
        name (`str`): the attack's name in the registry, and its subcommand (`hf-ingrain attack <name>`).
        help (`str`): the subcommand's help, one line.
        arguments (`tuple[type]`, *optional*): the attack's own argument dataclasses, parsed after the target's
            ([`~hf_ingrain.attacks.arguments.AttackArguments`]) and, for an attack that `trains`,
            [`~hf_ingrain.attacks.arguments.AttackTrainingArguments`]. Every field is a flag (with underscores or
            dashes) and its `metadata["help"]` the flag's help, as `HfArgumentParser` reads them.
        run_cli (`Callable`, *optional*): the subcommand's body, `run_cli(model, *parsed)`, `parsed` being one
            instance of each dataclass in that order; returns the attacked model and the parameters its card records,
            and optionally a list of lines for the CLI to print (library code never prints).
            Without it the attack has no subcommand (an input transform is a deployment, not weights: nothing to save).
        trains (`bool`, *optional*, defaults to `False`): the attack trains on the attacker's data; its subcommand takes
            `--data`, `--epochs`, `--max_steps`, `--batch_size` and `--learning_rate` too.
        check_cli (`Callable`, *optional*): `check_cli(*parsed)` raises a `ValueError` naming the fix; run before the
            target is loaded, so that a bad flag fails before any long work (overwrite: where the thief's key goes).
        card_name (`str`, *optional*): the attack's name in the saved card and the printed line (default: `name`).
        columns (`tuple[BenchmarkColumns]`, *optional*): the attack's benchmark columns.
    """

    name: str
    help: str
    arguments: tuple[type, ...] = ()
    run_cli: Callable | None = None
    trains: bool = False
    check_cli: Callable | None = None
    card_name: str | None = None
    columns: tuple[BenchmarkColumns, ...] = field(default=())

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", self.name):
            raise ValueError(f"Attack name {self.name!r}: lower-case letters, digits, '_' or '-' (it is a subcommand).")
        if self.run_cli is None and self.columns == ():
            raise ValueError(f"Attack {self.name!r} has neither a subcommand (`run_cli`) nor benchmark `columns`.")
        if self.run_cli is None and (self.arguments or self.trains or self.check_cli):
            raise ValueError(f"Attack {self.name!r} declares subcommand arguments but no `run_cli` to take them.")


@dataclass
class BenchmarkContext:
    r"""
    What a benchmark column's attack is given besides its target: the run's data, seeds and scale (built by the
    benchmark for each cell; see `hf_ingrain.benchmark.experiment`).

    Args:
        config ([`~hf_ingrain.benchmark.ExperimentConfig`]): the run's settings (`attack_epochs`, `finetune_epochs`,
            `batch_size`, `learning_rate`, the key's `num_carriers`, ...).
        attacker (`datasets.Dataset`): the attacker's split: labelled images, disjoint from the owner's.
        seed (`int`): the attacks' seed (the run's seed + 7).
        input_shape (`tuple[int, int, int]`): the images' `(channels, height, width)`.
        new_model (`Callable`): `new_model(seed, small=False)`, a fresh model of the owner's architecture (half as
            wide with `small`), seeded.
        thief_model (`Callable`): `thief_model(index)`, the thief's own model number `index`, trained plainly on the
            attacker's split once per run (for ensembles).
        training_args (`Callable`): `training_args(seed, epochs)`, the `TrainingArguments` fields of every model of the
            run (its batch size, learning rate, device; no logging, nothing saved), as a `dict`.
        state (`dict`): what an attack keeps for the rest of the run (overwrite: `"thief_key"`, drawn once per run
            like the owner's; the benchmark reads it for the two claims on one model).
    """

    config: Any
    attacker: Any
    seed: int
    input_shape: tuple
    new_model: Callable
    thief_model: Callable
    training_args: Callable
    state: dict = field(default_factory=dict)


_REGISTRY: dict[str, AttackSpec] = {}
_LOADED = False


def attack_specs() -> dict[str, AttackSpec]:
    """Every registered attack by name: those of `hf_ingrain.attacks` (read on the first call, in the order of their
    file names), then those added with [`register_attack`]."""
    global _LOADED
    if not _LOADED:
        _LOADED = True  # first, so that `register_attack` below does not load again
        try:
            package = importlib.import_module(__package__)
            for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
                if module_info.name.startswith("_"):
                    continue
                spec = getattr(importlib.import_module(f"{__package__}.{module_info.name}"), "ATTACK", None)
                if isinstance(spec, AttackSpec) and spec.name not in _REGISTRY:
                    register_attack(spec)
        except BaseException:
            _LOADED = False  # the next call tries again, and raises again
            raise
    return _REGISTRY


def register_attack(spec: AttackSpec) -> AttackSpec:
    """Adds `spec` to the registry (an attack outside `hf_ingrain/attacks/`); refuses a name or a column another attack
    has. Returns `spec`."""
    specs = attack_specs()
    if spec.name in specs:
        raise ValueError(f"An attack named {spec.name!r} is registered already ({specs[spec.name].help!r}).")
    for other in specs.values():
        for mine, theirs in ((spec, other), (other, spec)):
            taken = [name for family in mine.columns for name in family.names if _families_of(theirs, name)]
            if taken:
                raise ValueError(f"Attacks {spec.name!r} and {other.name!r} both claim the columns {taken}.")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_attack(name: str) -> AttackSpec:
    """Removes the attack `name` from the registry, and returns its spec."""
    return attack_specs().pop(name)


def column_names() -> tuple[str, ...]:
    """The benchmark columns the attacks list (`BenchmarkColumns.names`), in the registry's order."""
    return tuple(name for spec in attack_specs().values() for family in spec.columns for name in family.names)


def open_families() -> tuple[BenchmarkColumns, ...]:
    """The families of columns that accept every name their pattern matches (those with a `grammar`)."""
    return tuple(family for spec in attack_specs().values() for family in spec.columns if family.grammar is not None)


def _families_of(spec: AttackSpec, name: str) -> list[tuple[BenchmarkColumns, re.Match]]:
    return [(family, match) for family in spec.columns if (match := family.match(name))]


def attack_for_column(name: str) -> Callable:
    """The attack of the benchmark column `name` (one attack, not a chain): `attack(teacher, context)` returns the
    attacked model. Raises a `ValueError` naming the known columns for a name no attack has."""
    found = [(spec, *hit) for spec in attack_specs().values() for hit in _families_of(spec, name)]
    if not found:
        grammars = [family.grammar for family in open_families()]
        alternatives = f", or {', '.join(grammars)}" if grammars else ""
        raise ValueError(
            f"Unknown attack {name!r}; choose among {list(column_names())}{alternatives}, and chain them with '+'."
        )
    if len(found) > 1:
        raise ValueError(f"Column {name!r} is claimed by several attacks: {[spec.name for spec, *_ in found]}.")
    _, family, match = found[0]
    if family.check is not None:
        family.check(match)
    return functools.partial(family.run, match)


def check_attack_name(name: str) -> None:
    """Raises a `ValueError` naming the fix unless `name` is a column of the benchmark: a column of a registered attack,
    or a chain `a+b+...` of those (each applied to the previous one's result)."""
    for part in name.split("+"):
        attack_for_column(part)
