"""The `hf-ingrain` command, one module per subcommand.

Each module defines `add_parser(subparsers)`, which registers its subcommand and sets `func` (a callable taking the
parsed arguments and returning an exit code). A subcommand whose arguments are dataclasses (`attack`, `benchmark`)
registers with `add_help=False`, sets `parses_own_arguments=True`, and parses the rest of the command line itself
with [`~hf_ingrain.scripts.IngrainParser`] (`HfArgumentParser` with `--config file.yaml`), as trl's CLI does. Errors
reach the user as one line on stderr, never as a traceback (set `HF_INGRAIN_DEBUG=1` to see the traceback).
"""

import argparse
import importlib
import logging
import os
import sys

# modules that define `add_parser(subparsers)`, in the order `--help` lists them
SUBCOMMAND_MODULES = (
    "hf_ingrain.cli.demo",
    "hf_ingrain.cli.attack",
    "hf_ingrain.cli.verify",
    "hf_ingrain.cli.push",
    "hf_ingrain.cli.timestamp",
    "hf_ingrain.cli.audit",
    "hf_ingrain.cli.benchmark",
)

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="hf-ingrain", description="Watermarks that survive distillation (Ingrain) for Hugging Face models."
    )
    parser.add_argument("--version", action="version", version=f"hf_ingrain {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    if rest and not getattr(args, "parses_own_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    for noisy in ("transformers", "datasets", "accelerate", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        if getattr(args, "parses_own_arguments", False):
            return int(args.func(args, rest) or 0)
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
