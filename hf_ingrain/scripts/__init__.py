"""What scripts share, as trl's `trl.scripts`: argument dataclasses, [`IngrainParser`] (`HfArgumentParser` with YAML
configs) and the checks a multi-process run makes. The recipes in `recipes/` and the `hf-ingrain` subcommands import
them from here."""

from .arguments import DataArguments, IngrainScriptArguments, ModelArguments
from .parser import IngrainParser
from .training import (
    check_key_outside_output,
    check_processes_launched,
    finish_processes,
    setup_logging,
    train_and_save,
    weights_digest_per_process,
)

__all__ = [
    "DataArguments",
    "IngrainParser",
    "IngrainScriptArguments",
    "ModelArguments",
    "check_key_outside_output",
    "check_processes_launched",
    "finish_processes",
    "setup_logging",
    "train_and_save",
    "weights_digest_per_process",
]
