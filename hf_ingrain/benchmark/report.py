"""The benchmark's results as Markdown: the grid, the two claims of every overwriting attack, and the summary of a
run over several seeds (the share of seeds verified, mean and spread per cell)."""

import os
import platform
import statistics

import torch

from ..verification import format_p_value
from .config import FINGERPRINT_VICTIM


def machine_description() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    return f"{platform.machine()}, {device}, torch {torch.__version__}"


def _format_cell(cell: dict) -> str:
    if cell["verified"] is None:
        return "n/a"
    mark = "✅" if cell["verified"] else "❌"
    relation = format_p_value(cell["p_value"], spec=".0e").replace(" ", "")  # "=3e-09", or "<1e-300" when it underflows
    return f"{mark} {cell['score']:.2f} (p{relation})"


def results_markdown(results: dict) -> str:
    """The results table: one row per scheme; clean accuracy, then verdict, score and p-value per attack."""
    cells = results["cells"]
    attacks = ["none"] + list(results["config"]["attacks"])
    schemes = list(dict.fromkeys(c["scheme"] for c in cells))
    by_key = {(c["scheme"], c["attack"]): c for c in cells}
    header = ["scheme", "clean acc."] + ["before" if a == "none" else a for a in attacks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scheme in schemes:
        row = [scheme, f"{by_key[(scheme, 'none')]['test_accuracy']:.3f}"]
        row += [_format_cell(by_key[(scheme, a)]) if (scheme, a) in by_key else "" for a in attacks]
        lines.append("| " + " | ".join(row) + " |")
    accuracy = ["attacked model accuracy (mean over schemes)", ""] + [
        f"{sum(by_key[(s, a)]['test_accuracy'] for s in schemes) / len(schemes):.3f}" for a in attacks
    ]
    lines.append("| " + " | ".join(accuracy) + " |")
    legend = (
        "Each cell: verified (✅) or not (❌) at alpha = {alpha:g}, the watermark score (ingrain: runner-up agreement "
        "with the key on the test split; trigger sets: trigger accuracy; Uchida: bit accuracy), and the p-value. "
        "The reference has no watermark and is tested with the ingrain key (a false-positive check). "
        "n/a: a white-box test on a student whose layers differ."
    ).format(alpha=results["config"]["verify_alpha"])
    return (
        f"# hf_ingrain benchmark: {results['config']['dataset']}\n\n" + "\n".join(lines) + f"\n\n{legend}\n\n"
        + _claims_markdown(cells) + _false_claims_markdown(results.get("false_claims", []), _format_cell, schemes)
        + f"{results['date']}, {results['machine']}, {results['seconds']:.0f} s.\n"
    )


def _false_claims_markdown(claims: list[dict], render, schemes: list[str], cell_legend: str = "") -> str:
    """Each key's test on the models not derived from it: one row per key, `render(claim)` per model, the models in
    the order of `schemes`, then the thief's."""
    if not claims:
        return ""
    keys = list(dict.fromkeys(c["key"] for c in claims))
    tested = {c["model"] for c in claims}
    models = [m for m in schemes if m in tested] + sorted(tested - set(schemes))
    by_pair = {(c["key"], c["model"]): c for c in claims}
    victim = f"(the fingerprints' one victim as `{FINGERPRINT_VICTIM}`) " if FINGERPRINT_VICTIM in tested else ""
    lines = [
        "False claims: each key's test on the unattacked models not derived from it, the other schemes' "
        f"{victim}and `_thief_0` (the thief's own model, trained plainly on the attacker's split). {cell_legend}"
        "None may verify: where one does, the test's p-value is no bound for such models.",
        "",
        "| key | " + " | ".join(models) + " |",
        "|" + "---|" * (len(models) + 1),
    ]
    for key in keys:
        row = [render(by_pair[(key, m)]) if (key, m) in by_pair else "(its own)" for m in models]
        lines.append(f"| {key} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n\n"


def _claims_markdown(cells: list[dict]) -> str:
    """For overwriting attacks: both keys on the overwritten model, and the thief's key on the owner's original."""
    claims = [c for c in cells if "thief_verified" in c]
    if not claims:
        return ""

    def mark(verified, p_value):
        return ("✅" if verified else "❌") + " p" + format_p_value(p_value, spec=".0e").replace(" ", "")

    lines = [
        "Two claims on one model: the thief ingrained a key of their own into the stolen model. The owner's earlier "
        "commitment and the original model decide between them: the original must not verify under the thief's key.",
        "",
        "| scheme | attack | owner's test | thief's key | thief's key on the original |",
        "|---|---|---|---|---|",
    ]
    for c in claims:
        owner = "n/a" if c["verified"] is None else mark(c["verified"], c["p_value"])
        lines.append(
            f"| {c['scheme']} | {c['attack']} | {owner} | {mark(c['thief_verified'], c['thief_p_value'])} | "
            f"{mark(c['thief_on_original_verified'], c['thief_on_original_p_value'])} |"
        )
    return "\n".join(lines) + "\n\n"


def summarize_seeds(runs: list[dict]) -> dict:
    r"""
    The cells of several runs of one grid (one per seed, as [`run_benchmark`] returns them), summarised per scheme
    and attack: the seeds whose model verified, the score's and the accuracy's mean and standard deviation, the
    largest (least significant) p-value, and per attack the share of the model's own accuracy the attacked models
    kept.

    Args:
        runs (`list[dict]`): the results of each seed's run; their configs may differ in `seed` only.

    Returns:
        `dict`: `config` (without the seed), `seeds`, `cells` (one summary per scheme and attack, in the grid's order),
        `false_claims` (per key and model not derived from it: the seeds where it verified, the score's mean and
        spread, the smallest p-value), `kept_accuracy` (per attack), `seconds`, `date`, `machine`.
    """
    configs = [{k: v for k, v in run["config"].items() if k not in ("seed", "num_proc")} for run in runs]
    if not runs or any(config != configs[0] for config in configs):
        raise ValueError("summarize_seeds needs at least one run, and runs that differ in their seed only.")
    clean = {
        (index, cell["scheme"]): cell["test_accuracy"]
        for index, run in enumerate(runs) for cell in run["cells"] if cell["attack"] == "none"
    }
    cells = [
        {**fields, "max_p_value": max(c["p_value"] for c in tested) if tested else None,
         "accuracy": _mean_and_sd([c["test_accuracy"] for c in group])}
        for fields, group, tested in _verdicts_over_seeds(runs, "cells", ("scheme", "attack"))
    ]
    kept = {}
    for index, run in enumerate(runs):
        for cell in run["cells"]:
            kept.setdefault(cell["attack"], []).append(cell["test_accuracy"] / clean[(index, cell["scheme"])])
    false_claims = [
        {**fields, "min_p_value": min(c["p_value"] for c in tested) if tested else None}
        for fields, _, tested in _verdicts_over_seeds(runs, "false_claims", ("key", "model"))
    ]
    return {
        "config": configs[0], "seeds": [run["config"]["seed"] for run in runs], "cells": cells,
        "false_claims": false_claims,
        "kept_accuracy": {attack: statistics.fmean(values) for attack, values in kept.items()},
        "seconds": round(sum(run["seconds"] for run in runs), 1), "date": runs[-1]["date"],
        "machine": runs[-1]["machine"],
    }


def _verdicts_over_seeds(runs: list[dict], entries: str, names: tuple[str, str]):
    """For each pair of `names` values among the runs' `entries`, in order of appearance: the pair with the number of
    seeds, of seeds verified and the score's mean and spread; the entries; those tested (verdict not `None`)."""
    groups = {}
    for run in runs:
        for entry in run.get(entries, []):
            groups.setdefault(tuple(entry[name] for name in names), []).append(entry)
    for pair, group in groups.items():
        tested = [c for c in group if c["verified"] is not None]
        fields = {
            **dict(zip(names, pair)), "num_seeds": len(group),
            "num_verified": sum(bool(c["verified"]) for c in tested) if tested else None,
            "score": _mean_and_sd([c["score"] for c in tested]),
        }
        yield fields, group, tested


def _mean_and_sd(values: list) -> list | None:
    """`[mean, standard deviation]` (the deviation 0 for one value), or `None` without values."""
    if not values:
        return None
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def summary_markdown(summary: dict) -> str:
    """The tables of [`summarize_seeds`]: verdicts and scores per cell, then accuracies."""
    cells = summary["cells"]
    attacks = list(dict.fromkeys(c["attack"] for c in cells))
    schemes = list(dict.fromkeys(c["scheme"] for c in cells))
    by_key = {(c["scheme"], c["attack"]): c for c in cells}
    header = ["scheme"] + ["before" if a == "none" else a for a in attacks]

    def table(render):
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for scheme in schemes:
            row = [render(by_key[(scheme, a)]) if (scheme, a) in by_key else "" for a in attacks]
            lines.append("| " + " | ".join([scheme] + row) + " |")
        return lines

    def verdict(cell):
        if cell["num_verified"] is None:
            return "n/a"
        mark = "✅" if cell["num_verified"] == cell["num_seeds"] else "❌" if cell["num_verified"] == 0 else "◐"
        p_value = format_p_value(cell["max_p_value"], relation=False, spec=".0e").replace(" ", "")
        bound = f"p{p_value}" if p_value.startswith("<") else f"p≤{p_value}"  # the largest p-value over the seeds
        score = cell["score"]
        return f"{mark} {cell['num_verified']}/{cell['num_seeds']} {score[0]:.2f} ± {score[1]:.2f} ({bound})"

    accuracy = table(lambda cell: "{:.3f} ± {:.3f}".format(*cell["accuracy"]))
    accuracy.append("| kept share of the model's accuracy (mean) | " + " | ".join(
        f"{summary['kept_accuracy'][a]:.2f}" for a in attacks) + " |")
    seeds = ", ".join(str(seed) for seed in summary["seeds"])
    legend = (
        f"Each cell: the seeds whose model verified at alpha = {summary['config']['verify_alpha']:g} (✅ all, ❌ none, ◐ "
        "some), the watermark score's mean ± standard deviation over the seeds (ingrain: runner-up agreement with the "
        "key; trigger sets: trigger accuracy; Uchida: bit accuracy), and the largest p-value. Each seed draws its "
        "own split, keys and models. The reference has no watermark and is tested with the ingrain key."
    )

    def false_claim(claim):  # how many seeds verified (a false claim), and the smallest p-value over the seeds
        if claim["num_verified"] is None:
            return "n/a"
        p_value = format_p_value(claim["min_p_value"], relation=False, spec=".0e").replace(" ", "")
        bound = f"p{p_value}" if p_value.startswith("<") else f"p≥{p_value}"
        verified = f"{claim['num_verified']}/{claim['num_seeds']}"
        verified = f"**{verified} verified**" if claim["num_verified"] else verified
        return f"{verified} {claim['score'][0]:.2f} ± {claim['score'][1]:.2f} ({bound})"

    false_claims = _false_claims_markdown(
        summary.get("false_claims", []), false_claim, schemes,
        "Each cell: the seeds where it verified, the score's mean ± standard deviation, the smallest p-value. ",
    )
    return (
        f"# hf_ingrain benchmark: {summary['config']['dataset']}, seeds {seeds}\n\n" + "\n".join(table(verdict))
        + f"\n\n{legend}\n\nTest accuracy of each model (mean ± standard deviation over the seeds), and the share of "
        "its own accuracy an attacked model kept:\n\n" + "\n".join(accuracy) + "\n\n"
        + false_claims
        + f"{summary['date']}, {summary['machine']}, {summary['seconds']:.0f} s over the seeds.\n"
    )
