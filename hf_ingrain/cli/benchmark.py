"""`hf-ingrain benchmark`: every scheme against every attack at full scale, from flags or a YAML config, resumable.

Its arguments are the fields of [`~hf_ingrain.benchmark.ExperimentConfig`] (parsed with
[`~hf_ingrain.scripts.IngrainParser`]: `--config file.yaml`, then flags), `--output`, and `--seeds` for one run per
seed and their summary ([`~hf_ingrain.benchmark.run_benchmark_seeds`]).
"""

import os
from dataclasses import dataclass, field


@dataclass
class BenchmarkOutputArguments:
    """Where `hf-ingrain benchmark` writes (and resumes) its results."""

    output: str = field(default="benchmark_results", metadata={"help": "Results folder; cells already in it are reused."})
    seeds: list[int] | None = field(
        default=None,
        metadata={"help": "Run each seed (replaces --seed) into OUTPUT/seed_<seed>, then the summary over the seeds "
                  "(mean and spread per cell) into OUTPUT/summary.md."},
    )


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="Every scheme against every attack at full scale, resumable.", add_help=False,
        description="Run the demo's comparison from flags or a YAML config (ExperimentConfig fields); cells already in "
        "the output folder are reused.",
    )
    parser.set_defaults(func=_benchmark_from_cli, parses_own_arguments=True)


def _benchmark_from_cli(args, rest: list[str]) -> int:
    from ..benchmark import ExperimentConfig, results_markdown, run_benchmark, run_benchmark_seeds, summary_markdown
    from ..scripts import IngrainParser

    parser = IngrainParser([ExperimentConfig, BenchmarkOutputArguments], prog="hf-ingrain benchmark")
    config, output = parser.parse_args_and_config(rest)
    if output.seeds is not None:
        print(summary_markdown(run_benchmark_seeds(config, output.seeds, output.output)))
    else:
        print(results_markdown(run_benchmark(config, output.output)))
    print(f"Written to {os.path.abspath(output.output)}.")
    return 0
