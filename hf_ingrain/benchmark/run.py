"""[`run_benchmark`]: every cell of the grid, resumable, into one folder; [`run_benchmark_seeds`]: one such run per
seed, and their summary."""

import json
import os
import queue
import tempfile
import time
from dataclasses import asdict, replace

from tqdm.auto import tqdm

from ..files import write_json, write_text
from ..hashing import canonical_json
from ..processes import worker_pool
from .config import FINGERPRINT_VICTIM, FINGERPRINTS, ExperimentConfig
from .experiment import _cell, _Experiment, _trained_model, _verdict
from .report import machine_description, results_markdown, summarize_seeds, summary_markdown

CONFIG_FILE = "benchmark_config.json"
# Cell fields added after runs were recorded without them, with the value those runs used.
ADDED_FIELDS = {"ingrainer_batch_size": 256, "ingrainer_hidden_channels": [16, 32], "ingrainer_hidden_size": 64,
                "num_fingerprint_references": 16}


def _check_resumable(config: ExperimentConfig, output_dir: str) -> None:
    """Refuses to resume a run computed under another config (its cells would be mixed with this one's); records the
    config of a new run. Only the grid's rows and columns (`schemes`, `attacks`) may change between runs."""
    path = os.path.join(output_dir, CONFIG_FILE)
    fields = config.cell_fields()
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            recorded = {**ADDED_FIELDS, **(json.load(f).get("cell_fields") or {})}
        if canonical_json(recorded) != canonical_json(fields):
            changed = sorted(name for name in set(fields) | set(recorded) if recorded.get(name) != fields.get(name))
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
    Runs (or resumes) the benchmark and writes `results.json`, `results.md` and the plots into `output_dir`: every
    cell of the grid (scheme x attack), then every key's test on the unattacked models not derived from it
    (`false_claims`: the other schemes' models and the thief's own).

    With `config.num_proc > 1` the keys are made here (the ingrain key's ingrainers as one batched model), then
    the schemes are shared out to `num_proc` spawned processes, each computing its schemes' cells; in a script, call
    this under `if __name__ == "__main__":`.

    Args:
        config ([`ExperimentConfig`]): the run's settings.
        output_dir (`str`): results folder; cells and models already in it are reused, not recomputed.
        show_progress (`bool`, *optional*, defaults to `True`): show progress bars.

    Returns:
        `dict`: the results, as written to `results.json`.
    """
    from .plots import plot_lambda_tradeoff, plot_robustness

    start = time.time()
    os.makedirs(output_dir, exist_ok=True)
    _check_resumable(config, output_dir)  # before any long work
    experiment = _Experiment(config, output_dir)
    schemes, columns = experiment.schemes(), _columns(config)
    missing = {scheme: [a for a in columns if not os.path.isfile(_cell_path(output_dir, scheme, a))] for scheme in schemes}
    progress = tqdm(
        total=len(schemes) * len(columns), initial=len(schemes) * len(columns) - sum(map(len, missing.values())),
        desc="Benchmark", disable=not show_progress,
    )

    def report(scheme: str, attack: str) -> None:
        progress.set_postfix_str(f"{scheme} / {attack}")
        progress.update()

    pending = [unit for unit in _units(schemes) if any(missing[scheme] for scheme in unit)]
    if config.num_proc > 1 and len(pending) > 1:
        _run_in_processes(experiment, pending, report)
    computed = {}
    with tempfile.TemporaryDirectory() as scratch:
        for unit in _units(schemes):  # after the processes, this only reads their cells
            computed.update(_unit_cells(experiment, unit, scratch, report))
        progress.close()
        cells = [computed[scheme, attack] for scheme in schemes for attack in columns]
        false_claims = _false_claims(experiment, schemes, scratch, show_progress)
    results = {
        "config": asdict(config),
        "cells": cells,
        "false_claims": false_claims,
        "key_commitments": {  # the keys made in this run (a fully resumed run makes none)
            scheme: experiment._keys[scheme].commitment() for scheme in schemes if experiment._keys.get(scheme) is not None
        },
        "seconds": round(time.time() - start, 1),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_description(),
    }
    write_json(os.path.join(output_dir, "results.json"), results)
    write_text(os.path.join(output_dir, "results.md"), results_markdown(results))
    plot_robustness(results, os.path.join(output_dir, "robustness.png"))
    plot_lambda_tradeoff(results, os.path.join(output_dir, "lambda_tradeoff.png"))
    return results


def run_benchmark_seeds(
    config: ExperimentConfig, seeds: list[int], output_dir: str, show_progress: bool = True
) -> dict:
    r"""
    [`run_benchmark`] for each of `seeds` (each a new split, keys and models), in `output_dir/seed_<seed>`, then
    their summary (see [`~hf_ingrain.benchmark.report.summarize_seeds`]: per cell the seeds verified, mean and spread)
    in `output_dir/summary.json`, `summary.md` and `robustness.png` (mean scores, spread whiskers). Resumable like
    one run: finished seeds and cells are read, not recomputed. `config.seed` is ignored.

    Args:
        config ([`ExperimentConfig`]): the settings of every run but the seed.
        seeds (`list[int]`): distinct seeds, run in this order.
        output_dir (`str`): results folder.
        show_progress (`bool`, *optional*, defaults to `True`): show progress bars.

    Returns:
        `dict`: the summary, as written to `summary.json`.
    """
    from .plots import plot_seed_robustness

    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"`seeds` must be distinct seeds, at least one, got {seeds}.")
    configs = [replace(config, seed=seed) for seed in seeds]
    folders = [os.path.join(output_dir, f"seed_{seed}") for seed in seeds]
    for seed_config, folder in zip(configs, folders):  # every seed's folder checked before any long work
        os.makedirs(folder, exist_ok=True)
        _check_resumable(seed_config, folder)
    runs = [run_benchmark(seed_config, folder, show_progress) for seed_config, folder in zip(configs, folders)]
    summary = summarize_seeds(runs)
    write_json(os.path.join(output_dir, "summary.json"), summary)
    write_text(os.path.join(output_dir, "summary.md"), summary_markdown(summary))
    plot_seed_robustness(summary, os.path.join(output_dir, "robustness.png"))
    return summary


def _columns(config: ExperimentConfig) -> list[str]:
    """The grid's columns: the model before any attack (`"none"`), then each attack."""
    return ["none"] + list(config.attacks)


def _cell_path(output_dir: str, scheme: str, attack: str) -> str:
    return os.path.join(output_dir, "cells", scheme, f"{attack}.json")


def _units(schemes: list[str]) -> list[list[str]]:
    """The grid's units of work: each scheme alone, and the fingerprints together (they protect one victim, so its
    attacked copies are made once for all of them)."""
    fingerprints = [scheme for scheme in schemes if scheme in FINGERPRINTS]
    return [[scheme] for scheme in schemes if scheme not in FINGERPRINTS] + ([fingerprints] if fingerprints else [])


def _unit_cells(experiment: _Experiment, unit: list[str], scratch: str, report) -> dict[tuple[str, str], dict]:
    """The cells of the schemes of `unit` (see `_units`) by (scheme, attack): read where a file holds one, computed
    (and written) where not, with `report(scheme, attack)` after each computed cell. The unit's model is trained (or
    loaded) once, and each attack is applied to it once for every scheme of the unit."""
    cells, model = {}, None
    for attack in _columns(experiment.config):
        paths = {scheme: _cell_path(experiment.output_dir, scheme, attack) for scheme in unit}
        for scheme in [scheme for scheme in unit if os.path.isfile(paths[scheme])]:
            with open(paths[scheme]) as f:
                cells[scheme, attack] = json.load(f)
        missing = [scheme for scheme in unit if (scheme, attack) not in cells]
        if not missing:
            continue
        model = model if model is not None else _trained_model(experiment, unit[0], scratch)
        attacked = model if attack == "none" else experiment.attack(attack, model, scratch)
        claims = experiment.thief_claims(model, attacked) if "overwrite" in attack.split("+") else {}
        for scheme in missing:
            cell = {**_cell(experiment, scheme, attack, attacked), **claims}
            write_json(paths[scheme], cell)
            cells[scheme, attack] = cell
            report(scheme, attack)
    return cells


def _key_holders(schemes: list[str]) -> dict[str, tuple[str, list[str]]]:
    """Each key of the run (`"ingrain"` for the one ingrain key, else the scheme's name): the scheme whose test it is,
    and the models derived from it (the fingerprints': their shared victim, `FINGERPRINT_VICTIM`)."""
    holders = {}
    for scheme in schemes:
        if scheme in FINGERPRINTS:
            holders[scheme] = (scheme, [FINGERPRINT_VICTIM])
        elif scheme != "reference":
            key = "ingrain" if scheme.startswith("ingrain") else scheme
            holders.setdefault(key, (scheme, []))[1].append(scheme)
    return holders


def _false_claims(experiment: _Experiment, schemes: list[str], scratch: str, show_progress: bool) -> list[dict]:
    """Each key's test on the unattacked models not derived from it: the other schemes' models (the fingerprints'
    shared victim once) and the thief's own (`_thief_0`, trained plainly on the attacker's split). None of them may
    verify; one that does shows the test's p-value is no bound for such models. Resumable like the grid
    (`cells/_false_claims/<key>/<model>.json`)."""
    victims = [FINGERPRINT_VICTIM] if any(scheme in FINGERPRINTS for scheme in schemes) else []
    models = [scheme for scheme in schemes if scheme not in FINGERPRINTS] + victims + ["_thief_0"]
    holders = _key_holders(schemes)
    pairs = [(key, name) for key, (_, derived) in holders.items() for name in models if name not in derived]
    folder = os.path.join(experiment.output_dir, "cells", "_false_claims")
    paths = {(key, name): os.path.join(folder, key, f"{name}.json") for key, name in pairs}
    done = sum(os.path.isfile(path) for path in paths.values())
    loaded, claims = {}, []
    progress = tqdm(total=len(pairs), initial=done, desc="False claims", disable=not show_progress or done == len(pairs))
    for key, name in pairs:
        path = paths[key, name]
        if os.path.isfile(path):
            with open(path) as f:
                claims.append(json.load(f))
            continue
        if name not in loaded:
            loaded[name] = (
                experiment.thief_model(0, scratch) if name == "_thief_0" else _trained_model(experiment, name, scratch)
            )
        claim = {"key": key, "model": name, **_verdict(experiment.verify(holders[key][0], loaded[name]))}
        write_json(path, claim)
        claims.append(claim)
        progress.update()
    progress.close()
    return claims


def _run_in_processes(experiment: _Experiment, units: list[list[str]], report) -> None:
    """Computes the missing cells of `units` (see `_units`) in `config.num_proc` processes (see
    `hf_ingrain.processes`). The keys are made here first and handed over in memory (they are never written)."""
    schemes = [scheme for unit in units for scheme in unit]
    keys = {scheme: experiment.key(scheme) for scheme in schemes}
    with tempfile.TemporaryDirectory() as scratch:  # trained (and saved) here once, loaded by the workers
        for scheme in schemes:
            if scheme in FINGERPRINTS:
                experiment.fingerprint(scheme, scratch)
    with worker_pool(experiment.config.num_proc, len(units)) as (context, pool), context.Manager() as manager:
        events = manager.Queue()
        tasks = [(experiment.config, experiment.output_dir, unit, keys, events) for unit in units]
        result = pool.map_async(_unit_task, tasks, chunksize=1)
        while not result.ready() or not events.empty():
            try:
                report(*events.get(timeout=1))
            except queue.Empty:
                pass
        result.get()  # raises a process's error here


_WORKER_EXPERIMENTS = {}


def _unit_task(task) -> None:
    """One unit's missing cells (see `_units`), in a worker process (its experiment, with the data, is loaded
    once)."""
    config, output_dir, unit, keys, events = task
    if output_dir not in _WORKER_EXPERIMENTS:
        _WORKER_EXPERIMENTS[output_dir] = _Experiment(config, output_dir)
    experiment = _WORKER_EXPERIMENTS[output_dir]
    experiment._keys.update(keys)
    with tempfile.TemporaryDirectory() as scratch:
        _unit_cells(experiment, unit, scratch, lambda s, a: events.put((s, a)))
