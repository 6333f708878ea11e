"""Plots of benchmark results (matplotlib, written as PNG files)."""

from ..extras import require
from ..files import atomic_file

require("matplotlib", "The benchmark's plots").use("Agg")  # before pyplot: no display
plt = require("matplotlib.pyplot", "The benchmark's plots")


def _save(figure, path: str) -> None:
    with atomic_file(path) as temporary:
        figure.savefig(temporary, dpi=120, bbox_inches="tight")
    plt.close(figure)


def plot_robustness(results: dict, path: str) -> None:
    """Watermark score of every scheme before and after every attack, verified cells drawn solid."""
    bars = {
        (c["scheme"], c["attack"]): (c["score"], None, 1.0 if c["verified"] else 0.0)
        for c in results["cells"] if c["score"] is not None
    }
    title = f"Which watermark survives which attack (solid: verified at alpha = {results['config']['verify_alpha']:g})"
    _score_bars(bars, ["none"] + list(results["config"]["attacks"]), title, path)


def plot_seed_robustness(summary: dict, path: str) -> None:
    """[`plot_robustness`] over seeds (a [`~hf_ingrain.benchmark.summarize_seeds`] summary): each bar the mean score,
    its whisker the standard deviation, solid where every seed verified, paler the fewer did."""
    bars = {
        (c["scheme"], c["attack"]): (c["score"][0], c["score"][1], c["num_verified"] / c["num_seeds"])
        for c in summary["cells"] if c["score"] is not None
    }
    seeds = ", ".join(str(seed) for seed in summary["seeds"])
    title = (
        f"Which watermark survives which attack, seeds {seeds} (solid: every seed verified at alpha = "
        f"{summary['config']['verify_alpha']:g}; pale: none)"
    )
    _score_bars(bars, list(dict.fromkeys(attack for _, attack in bars)), title, path)


def _score_bars(bars: dict, attacks: list[str], title: str, path: str) -> None:
    """One group of bars per attack, one bar per scheme: `bars[(scheme, attack)] = (score, spread or None, share of
    the seeds verified)`."""
    schemes = list(dict.fromkeys(scheme for scheme, _ in bars))
    figure, axis = plt.subplots(figsize=(max(8, 1.3 * len(attacks)), 4.5))
    width = 0.8 / max(len(schemes), 1)
    colors = plt.get_cmap("tab10")
    for index, scheme in enumerate(schemes):
        for position, attack in enumerate(attacks):
            if (scheme, attack) not in bars:
                continue
            score, spread, verified = bars[(scheme, attack)]
            axis.bar(
                position + (index - (len(schemes) - 1) / 2) * width, score, width, yerr=spread,
                color=colors(index % 10), alpha=0.3 + 0.7 * verified, edgecolor="black" if verified == 1 else "none",
                label=scheme if position == 0 else None, error_kw={"elinewidth": 0.8},
            )
    axis.set_xticks(range(len(attacks)), ["before" if a == "none" else a for a in attacks], rotation=30, ha="right")
    axis.set_ylabel("watermark score")
    axis.set_ylim(0, 1.05)
    axis.set_title(title)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: the bars reach 1.0
    _save(figure, path)


def plot_lambda_tradeoff(results: dict, path: str) -> None:
    """Clean accuracy and ingrain agreement for each λ (the reference, tested with the ingrain key, is λ = 0)."""
    cells = {(c["scheme"], c["attack"]): c for c in results["cells"]}
    lambdas = [0.0] + [float(v) for v in results["config"]["ingrain_lambdas"]]
    names = ["reference"] + [f"ingrain_lambda_{v:g}" for v in results["config"]["ingrain_lambdas"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    accuracies = [cells[(n, "none")]["test_accuracy"] for n in names if (n, "none") in cells]
    left.plot(lambdas[: len(accuracies)], accuracies, "o-")
    left.set_xlabel("ingrain λ")
    left.set_ylabel("clean test accuracy")
    left.set_title("Accuracy cost of λ")
    for attack in ("none", "distill_T1", "distill_T4"):
        points = [(v, cells[(n, attack)]["score"]) for v, n in zip(lambdas, names) if (n, attack) in cells]
        if points:
            right.plot(*zip(*points), "o-", label="before attack" if attack == "none" else f"after {attack}")
    nulls = [cells[(n, "none")]["null_rate"] for n in names if (n, "none") in cells]
    if nulls:
        right.axhline(max(nulls), color="gray", linestyle="--", label="null rate (max)")
    right.set_xlabel("ingrain λ")
    right.set_ylabel("runner-up agreement with the key")
    right.set_title("Watermark strength of λ")
    right.legend(fontsize=8)
    _save(figure, path)
