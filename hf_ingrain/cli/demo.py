"""`hf-ingrain demo`: the paper's experiment on the embedded data, end to end, in one command.

An unwatermarked reference, the baseline watermarks (Zhang content / noise / unrelated, Adi, Uchida) and ingrain at
two values of λ (0.25 and 0.5), each attacked by distillation (T = 1 and T = 4; a student of the same and of a smaller
architecture), hard-label extraction, fine-tuning (FTAL), pruning (50%) and quantization (4 bits), and every model
verified before and after, then every key on the models not derived from it (false claims). Writes `results.json`,
`results.md`, `robustness.png` and `lambda_tradeoff.png`. This is [`~hf_ingrain.benchmark.run_benchmark`] at the
scale of [`~hf_ingrain.benchmark.ExperimentConfig`]'s defaults, in one process per CPU core (up to 8; one with a
GPU): 7 minutes on 2 idle CPU cores (12 to 13 under load), 4.5 of them training the ingrain key's ingrainer and its 16
reference ingrainers (17 minutes in one process).
"""

import os


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="Run the paper's experiment on the embedded data: every scheme, every attack, one table.",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--output", default="results", help="Results folder (default: results). Reused to resume.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the splits, the demo keys and the models.")
    parser.add_argument(
        "--num_proc", type=int, default=None,
        help="Processes sharing the work (default: one per CPU core, up to 8; one with a GPU).",
    )
    parser.set_defaults(func=_run_from_cli)


def _run_from_cli(args) -> int:
    from ..benchmark import ExperimentConfig, results_markdown, run_benchmark

    num_proc = default_num_proc() if args.num_proc is None else args.num_proc
    results = run_benchmark(ExperimentConfig(seed=args.seed, num_proc=num_proc), args.output)
    print(results_markdown(results))
    print(f"Written to {os.path.abspath(args.output)} (results.md, results.json, robustness.png, lambda_tradeoff.png).")
    return 0


def default_num_proc() -> int:
    """One process per CPU core, up to 8 (the demo's grid has 8 schemes); one where a GPU trains the models."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, min(os.cpu_count() or 1, 8))
