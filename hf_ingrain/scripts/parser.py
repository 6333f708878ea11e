"""[`IngrainParser`]: `HfArgumentParser` with `--config file.yaml`, as trl's `TrlParser`: the one way every script and
subcommand of this package reads its arguments (the recipes, `hf-ingrain benchmark`, `hf-ingrain attack`)."""

import os

import yaml
from transformers import HfArgumentParser


class IngrainParser(HfArgumentParser):
    r"""
    Parses dataclasses from the command line, reading `--config file.yaml` first.

    Keys of the YAML file are the flag names without `--`. They become the parser's defaults, so any flag given on the
    command line overrides the file. Unknown keys and unknown flags are errors, never silently ignored. Every field
    is a flag under its own name (`--learning_rate`) and with dashes (`--learning-rate`).

    Args:
        dataclass_types (`list[type]`): the argument dataclasses (e.g. `[ScriptArguments, IngrainConfig]`).
        **kwargs: passed to `HfArgumentParser` (`prog`, `description`, ...).

    Example:

    ```python
    >>> from hf_ingrain import IngrainConfig
    >>> from hf_ingrain.scripts import DataArguments, IngrainParser, IngrainScriptArguments, ModelArguments
    >>> parser = IngrainParser([IngrainScriptArguments, DataArguments, ModelArguments, IngrainConfig])
    >>> script_args, data_args, model_args, training_args = parser.parse_args_and_config(
    ...     ["--config", "recipes/configs/mnist5k_small_cnn_cpu.yaml", "--max_steps", "5"]
    ... )
    >>> training_args.max_steps == 5 and model_args.model_type == "small_cnn"
    True
    ```
    """

    def __init__(self, dataclass_types, **kwargs):
        dataclass_types = list(dataclass_types)
        for dataclass_type in dataclass_types:
            if "config" in dataclass_type.__dataclass_fields__:
                raise ValueError(f"{dataclass_type.__name__} has a field `config`, which is reserved for the YAML file.")
        super().__init__(dataclass_types, **kwargs)
        self.add_argument("--config", help="YAML file of arguments (keys are the flag names); flags given here override it.")
        self._num_dataclasses = len(dataclass_types)

    def parse_args_and_config(self, args: list[str] | None = None) -> tuple:
        r"""
        Parses `args` (default: `sys.argv[1:]`) into one instance of each dataclass, after the `--config` file.

        Returns:
            `tuple`: one instance per dataclass, in order.
        """
        import argparse
        import sys

        args = list(sys.argv[1:] if args is None else args)
        pre_parser = argparse.ArgumentParser(add_help=False)
        pre_parser.add_argument("--config")
        config_path = pre_parser.parse_known_args(args)[0].config
        if config_path is not None:
            self.set_defaults_from_yaml(config_path)
        outputs = self.parse_args_into_dataclasses(args=args)
        return tuple(outputs[: self._num_dataclasses])  # drop the namespace that holds `--config`

    def set_defaults_from_yaml(self, config_path: str) -> None:
        """Makes the values of a YAML file the defaults of the matching flags (unknown keys are refused)."""
        if not os.path.isfile(config_path):
            raise ValueError(f"--config {config_path!r}: no such file. Pass the path of a YAML file.")
        with open(config_path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{config_path}: expected a mapping of flag names to values, got {type(config).__name__}.")
        destinations = {action.dest for action in self._actions}
        unknown = sorted(set(config) - destinations - {"config"})
        if unknown:
            raise ValueError(f"{config_path}: unknown keys {unknown}. Keys are the flag names without `--`; see `--help`.")
        for action in self._actions:
            if action.dest in config:
                action.required = False
        self.set_defaults(**config)
