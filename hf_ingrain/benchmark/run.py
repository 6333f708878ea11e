"""[`run_benchmark`]: every cell of the grid, resumable, into one folder."""

import json
import os
import tempfile
import time
from dataclasses import asdict

from tqdm.auto import tqdm

from ..files import write_json, write_text
from ..hashing import canonical_json
from .config import ExperimentConfig
from .experiment import _cell, _Experiment, _trained_model
from .report import machine_description, results_markdown

CONFIG_FILE = "benchmark_config.json"


def _check_resumable(config: ExperimentConfig, output_dir: str) -> None:
    """Refuses to resume a run computed under another config (its cells would be mixed with this one's); records the
    config of a new run. Only the grid's rows and columns (`schemes`, `attacks`) may change between runs."""
    path = os.path.join(output_dir, CONFIG_FILE)
    fields = config.cell_fields()
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
        if canonical_json(recorded.get("cell_fields")) != canonical_json(fields):
            changed = sorted(
                name for name in set(fields) | set(recorded.get("cell_fields") or {})
                if (recorded.get("cell_fields") or {}).get(name) != fields.get(name)
            )
            raise ValueError(
                f"{output_dir!r} holds a benchmark run with another config (fields that differ: {changed}); its cells "
                "would be mixed with this run's. Use a new output folder, or delete this one to start over."
            )
    elif os.path.isdir(os.path.join(output_dir, "cells")) or os.path.isdir(os.path.join(output_dir, "models")):
        raise ValueError(
            f"{output_dir!r} holds benchmark cells but no {CONFIG_FILE}, so their config is unknown (a run of an "
            "older hf_ingrain?). Use a new output folder, or delete this one to start over."
        )
    else:
        write_json(path, {"cell_fields": fields})


def run_benchmark(config: ExperimentConfig, output_dir: str, show_progress: bool = True) -> dict:
    r"""
    Runs (or resumes) the benchmark and writes `results.json`, `results.md` and the plots into `output_dir`.

    Args:
        config ([`ExperimentConfig`]): the run's settings.
        output_dir (`str`): results folder; cells and models already in it are reused, not recomputed.
        show_progress (`bool`, *optional*, defaults to `True`): show progress bars.

    Returns:
        `dict`: the results, as written to `results.json`.
    """
    from ..plots import plot_lambda_tradeoff, plot_robustness

    start = time.time()
    os.makedirs(output_dir, exist_ok=True)
    _check_resumable(config, output_dir)  # before any long work
    experiment = _Experiment(config, output_dir)
    cells, commitments = [], {}
    schemes = experiment.schemes()
    progress = tqdm(total=len(schemes) * (1 + len(config.attacks)), desc="Benchmark", disable=not show_progress)
    with tempfile.TemporaryDirectory() as scratch:
        for scheme in schemes:
            model = None
            for attack in ["none"] + list(config.attacks):
                progress.set_postfix_str(f"{scheme} / {attack}")
                path = os.path.join(output_dir, "cells", scheme, f"{attack}.json")
                if os.path.isfile(path):
                    with open(path) as f:
                        cells.append(json.load(f))
                else:
                    model = model if model is not None else _trained_model(experiment, scheme, scratch)
                    attacked = model if attack == "none" else experiment.attack(attack, model, scratch)
                    cell = _cell(experiment, scheme, attack, attacked)
                    if "overwrite" in attack.split("+"):
                        cell.update(experiment.thief_claims(model, attacked))
                    write_json(path, cell)
                    cells.append(cell)
                progress.update()
            key = experiment._keys.get(scheme)
            if key is not None:
                commitments[scheme] = key.commitment()
    progress.close()
    results = {
        "config": asdict(config),
        "cells": cells,
        "key_commitments": commitments,
        "seconds": round(time.time() - start, 1),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_description(),
    }
    write_json(os.path.join(output_dir, "results.json"), results)
    write_text(os.path.join(output_dir, "results.md"), results_markdown(results))
    plot_robustness(results, os.path.join(output_dir, "robustness.png"))
    plot_lambda_tradeoff(results, os.path.join(output_dir, "lambda_tradeoff.png"))
    return results


