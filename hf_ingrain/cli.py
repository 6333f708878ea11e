"""The `hf-ingrain` command.

Each subcommand lives next to the code it drives and registers itself through an `add_parser(subparsers)` function
that sets `func` (a callable taking the parsed arguments and returning an exit code). Errors reach the user as one
line on stderr, never as a traceback (set `HF_INGRAIN_DEBUG=1` to see the traceback).
"""

import argparse
import importlib
import logging
import os
import sys

# module that defines `add_parser(subparsers)`, in the order `--help` lists them
SUBCOMMAND_MODULES = (
    "hf_ingrain.demo",
    "hf_ingrain.attacks.cli",
    "hf_ingrain.verify_cli",
    "hf_ingrain.hub_cli",
    "hf_ingrain.benchmark",
)

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="hf-ingrain", description="Watermarks that survive distillation (Ingrain) for Hugging Face models."
    )
    parser.add_argument("--version", action="version", version=f"hf_ingrain {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if not (error.name and module_name.startswith(error.name)):
                raise  # a missing dependency, not a missing subcommand
            continue
        module.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    for noisy in ("transformers", "datasets", "accelerate", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the CLI shows errors, not tracebacks
        if os.environ.get("HF_INGRAIN_DEBUG"):
            raise
        print(f"hf-ingrain: error: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
