"""Plots of benchmark results (matplotlib, written as PNG files)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .files import atomic_file  # noqa: E402


def _save(figure, path: str) -> None:
    with atomic_file(path) as temporary:
        figure.savefig(temporary, dpi=120, bbox_inches="tight")
    plt.close(figure)


def plot_robustness(results: dict, path: str) -> None:
    """Watermark score of every scheme before and after every attack, verified cells drawn solid."""
    cells = [c for c in results["cells"] if c["score"] is not None]
    attacks = ["none"] + list(results["config"]["attacks"])
    schemes = list(dict.fromkeys(c["scheme"] for c in cells))
    by_key = {(c["scheme"], c["attack"]): c for c in cells}
    figure, axis = plt.subplots(figsize=(max(8, 1.3 * len(attacks)), 4.5))
    width = 0.8 / max(len(schemes), 1)
    colors = plt.get_cmap("tab10")
    for index, scheme in enumerate(schemes):
        for position, attack in enumerate(attacks):
            cell = by_key.get((scheme, attack))
            if cell is None:
                continue
            axis.bar(
                position + (index - (len(schemes) - 1) / 2) * width, cell["score"], width,
                color=colors(index % 10), alpha=1.0 if cell["verified"] else 0.3,
                edgecolor="black" if cell["verified"] else "none", label=scheme if position == 0 else None,
            )
    axis.set_xticks(range(len(attacks)), ["before" if a == "none" else a for a in attacks], rotation=30, ha="right")
    axis.set_ylabel("watermark score")
    axis.set_ylim(0, 1.05)
    axis.set_title(f"Which watermark survives which attack (solid: verified at alpha = {results['config']['verify_alpha']:g})")
    axis.legend(fontsize=8, ncol=2, loc="upper right")
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
