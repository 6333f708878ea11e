"""The benchmark's results as Markdown: the grid, and the two claims of every overwriting attack."""

import os
import platform

import torch

from ..verification import format_p_value


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
        + _claims_markdown(cells) + f"{results['date']}, {results['machine']}, {results['seconds']:.0f} s.\n"
    )


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
