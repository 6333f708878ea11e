r"""
The key-draw test's tail, measured: how often it claims a model that never saw the key, at alpha = 1e-2 to 1e-4,
and whether a suspect's agreements with keys of the same recipe have a tail heavier than the normal one that its
Student's t assumes (`hf_ingrain.verification.statistics`).

    # the measurement of README.md: 32 ingrainers x 40 models on the embedded 5,000 digits (44 min on 2 shared cores)
    python docs/key_draw_tail/key_draw_tail.py --output_dir docs/key_draw_tail

The pool: one key (seed `--key_seed`) trained with the package's default recipe on the owner split, with
`--num_ingrainers - 1` reference ingrainers: keys of the same recipe from seeds the key's seed fixes, so every member
of the pool is one draw of the procedure that makes a key. The suspects: `--models` (small CNNs of three widths and
several seeds, on the attacker split or on the owner split, with label smoothing or a third of the epochs, and
transformers ResNets), none of which saw any key. Each (model, pool member) is a null pair: the member plays the
key's ingrainer, and `--num_references` other members, drawn once per member with `--reference_draw_seed`, play its
references. For every pair the script runs what `verify()` runs on the test split's distinct queries
(`key_agreements`, `ingrain_null_rate`, `ingrain_p_value`), and records the key-draw p-value, its t-statistic and the
standardised agreement `(a - mean(refs)) / sd(refs)`.

With `--statistic scores` the pairs are judged by the scores protocol instead (`protocol="ingrain_scores"`: the
correlation of the model's scores with the member's own part, `score_correlations`, and the key-draw test alone,
which is then also what `verify()` runs): `--scores_file` reruns a pool's scores that way, training nothing.

Writes `key_draw_tail.json` (every pair, and the summary), `key_draw_tail.md` (the observed false-positive rates with
exact 95% intervals, and the tail's shape), `key_draw_tail.png` (Q-Q plot and tail of the t-statistics against
Student's t and the normal) and `scores.pt` (every score matrix: `--scores_file` reruns the analysis from it).
"""

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm
from transformers import Trainer, TrainingArguments, set_seed

from hf_ingrain import WatermarkKey
from hf_ingrain.data.query_set import read_queries
from hf_ingrain.files import write_text
from hf_ingrain.models import build_classifier
from hf_ingrain.scripts import DataArguments, IngrainParser
from hf_ingrain.suspects import collect_scores
from hf_ingrain.verification.statistics import (
    ingrain_null_rate,
    ingrain_p_value,
    key_agreements,
    runner_up,
    score_correlations,
    score_p_value,
)

logger = logging.getLogger(__name__)

# name -> (architecture, training split, seed, label smoothing, share of `--epochs`): 40 models that never see a key
MODELS = {
    **{f"cnn_s{seed}": ("small_cnn", "attacker", seed, 0.0, 1.0) for seed in range(12)},
    **{f"cnn_owner_data_s{seed}": ("small_cnn", "owner", 10 + seed, 0.0, 1.0) for seed in range(8)},
    **{f"cnn_narrow_s{seed}": ("narrow_cnn", "attacker", 20 + seed, 0.0, 1.0) for seed in range(6)},
    **{f"cnn_wide_s{seed}": ("wide_cnn", "attacker", 30 + seed, 0.0, 1.0) for seed in range(4)},
    **{f"cnn_smooth0.1_s{seed}": ("small_cnn", "attacker", 40 + seed, 0.1, 1.0) for seed in range(4)},
    **{f"cnn_short_s{seed}": ("small_cnn", "attacker", 50 + seed, 0.0, 1 / 3) for seed in range(4)},
    **{f"resnet_s{seed}": ("resnet", "attacker", 60 + seed, 0.0, 1.0) for seed in range(2)},
}
SIZES = {
    "small_cnn": dict(hidden_sizes=[16, 32], hidden_size=64),
    "narrow_cnn": dict(hidden_sizes=[8, 16], hidden_size=32),
    "wide_cnn": dict(hidden_sizes=[32, 64], hidden_size=128),
    "resnet": dict(hidden_sizes=[16, 32], depths=[1, 1], embedding_size=16),
}


@dataclass
class KeyDrawTailArguments:
    r"""
    Arguments of `key_draw_tail.py`.

    Args:
        num_ingrainers (`int`, *optional*, defaults to 32): the pool: one key and `num_ingrainers - 1` references.
        key_seed (`int`, *optional*, defaults to 0): the seed of the pool's key (its references' seeds follow from it).
        ingrainer_steps (`int`, *optional*, defaults to 600): training steps of every ingrainer (the default recipe).
        num_references (`int`, *optional*, defaults to 16): references per null pair (a key's default).
        reference_draw_seed (`int`, *optional*, defaults to 0): seed of the draw of each member's references.
        models (`list[str]`, *optional*, defaults to every name of `MODELS`): the models that never saw a key.
        epochs (`float`, *optional*, defaults to 3): training epochs of the models.
        num_queries (`int`, *optional*): the first distinct queries of the test split to use (default: all).
        alphas (`list[float]`, *optional*, defaults to `[0.1, 0.05, 0.01, 0.001, 0.0001]`): the levels reported.
        scores_file (`str`, *optional*): a `scores.pt` of an earlier run: analyse it again, training nothing.
        statistic (`str`, *optional*, defaults to `"runner_up"`): `"runner_up"` (the `"ingrain"` protocol) or
            `"scores"` (the `"ingrain_scores"` protocol).
        output_dir (`str`, *optional*, defaults to `"outputs/key_draw_tail"`): where the results go.
    """

    num_ingrainers: int = field(default=32, metadata={"help": "The pool: one key and num_ingrainers - 1 references."})
    key_seed: int = field(default=0, metadata={"help": "Seed of the pool's key (its references' seeds follow)."})
    ingrainer_steps: int = field(default=600, metadata={"help": "Training steps of every ingrainer."})
    num_references: int = field(default=16, metadata={"help": "References per null pair (a key's default)."})
    reference_draw_seed: int = field(default=0, metadata={"help": "Seed of the draw of each member's references."})
    models: list[str] = field(default_factory=lambda: list(MODELS), metadata={"help": "Models that never saw a key."})
    epochs: float = field(default=3, metadata={"help": "Training epochs of the models."})
    num_queries: int | None = field(default=None, metadata={"help": "First distinct test queries (default: all)."})
    alphas: list[float] = field(
        default_factory=lambda: [0.1, 0.05, 0.01, 0.001, 0.0001], metadata={"help": "Levels reported."}
    )
    scores_file: str | None = field(default=None, metadata={"help": "A scores.pt to analyse again, training nothing."})
    statistic: str = field(default="runner_up", metadata={"help": "runner_up (protocol ingrain) or scores "
                                                                  "(protocol ingrain_scores)."})
    output_dir: str = field(default="outputs/key_draw_tail", metadata={"help": "Where the results go."})


# ------------------------------------------------------------------------------------------------ scores
def train_model(name, splits, input_shape, num_labels, epochs, scratch):
    """One model of `MODELS`, trained without any key."""
    kind, split, seed, smoothing, share = MODELS[name]
    set_seed(seed)
    model = build_classifier("resnet" if kind == "resnet" else "small_cnn", num_labels, tuple(input_shape), **SIZES[kind])
    args = TrainingArguments(
        output_dir=scratch, num_train_epochs=epochs * share, per_device_train_batch_size=128, learning_rate=2e-3,
        seed=seed, label_smoothing_factor=smoothing, report_to="none", save_strategy="no", logging_strategy="no",
        disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
    )
    Trainer(model=model, args=args, train_dataset=splits[split]).train()
    return model.eval()


def compute_scores(data_args, args) -> dict:
    """Trains the pool and the models; their scores on the queries, the labels, and what made them."""
    splits = data_args.load_splits()
    num_labels = splits["owner"].features["labels"].num_classes
    input_shape = tuple(splits["owner"][0]["pixel_values"].shape)
    timings = {}
    start = time.time()
    logger.info("Training the pool: a key and %d reference ingrainers", args.num_ingrainers - 1)
    key = WatermarkKey.generate(num_labels, input_shape, seed=args.key_seed)
    key.train_ingrainer(
        benign_dataset=splits["owner"], num_steps=args.ingrainer_steps, num_reference_keys=args.num_ingrainers - 1,
    )
    timings["pool_s"] = time.time() - start
    queries = read_queries(key, splits["test"]).deduplicated(splits["test"])
    num_duplicates = len(splits["test"]) - len(queries)
    if args.num_queries is not None:
        queries = queries.select(range(min(args.num_queries, len(queries))))
    main, references = key.ingrainer_scores(queries, batch_size=1024)
    labels = collect_scores(lambda batch: torch.zeros(len(batch["pixel_values"]), num_labels), queries)[1]
    start = time.time()
    model_scores = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in tqdm(args.models, desc="Models that never saw a key"):
            model = train_model(name, splits, input_shape, num_labels, args.epochs, scratch)
            model_scores[name] = collect_scores(model, queries, batch_size=1024)[0]
    timings["models_s"] = time.time() - start
    accuracy = {name: (scores.argmax(-1) == labels).float().mean().item() for name, scores in model_scores.items()}
    return {
        "pool": torch.stack([main, *references]), "models": model_scores, "labels": labels, "accuracy": accuracy,
        "timings": timings, "carrier_accuracy": key.training_info["carrier_accuracy"],
        "num_duplicates": num_duplicates,
    }


# ------------------------------------------------------------------------------------------------ the pairs
def reference_draws(num_ingrainers: int, num_references: int, seed: int) -> list[list[int]]:
    """For each pool member, the `num_references` other members that play its references (one seeded draw)."""
    if not 2 <= num_references < num_ingrainers:
        raise ValueError(
            f"`--num_references` must be at least 2 and below `--num_ingrainers` ({num_ingrainers}), got {num_references}."
        )
    generator = np.random.default_rng(seed)
    draws = []
    for member in range(num_ingrainers):
        others = [index for index in range(num_ingrainers) if index != member]
        draws.append(sorted(int(index) for index in generator.choice(others, num_references, replace=False)))
    return draws


def null_pairs(scores: dict, draws: list[list[int]], statistic: str = "runner_up") -> list[dict]:
    """`verify()`'s ingrain test of every model against every pool member as the key, the drawn members as its
    references, on the same queries (the statistics of `hf_ingrain.verification.statistics`, called as verify calls
    them)."""
    if statistic == "scores":
        return scores_null_pairs(scores, draws)
    pool, labels = scores["pool"], scores["labels"]
    rows = []
    for model_name, model_scores in tqdm(scores["models"].items(), desc="Null pairs"):
        top = model_scores.argmax(-1)
        suspect_runner_up = runner_up(model_scores, top)
        for member, references in enumerate(draws):
            null_rate, _ = ingrain_null_rate(pool[member], top, labels)
            choice, reference_agreements = key_agreements(suspect_runner_up, top, pool[member], pool[references])
            count, num_queries = int((suspect_runner_up == choice).sum()), len(top)
            p_value, p_binomial, key_draw = ingrain_p_value(count, num_queries, null_rate, reference_agreements)
            sample_sd = float(np.std(reference_agreements, ddof=1))
            rows.append({
                "model": model_name, "ingrainer": member, "references": references, "num_queries": num_queries,
                "agreement": count / num_queries, "reference_agreements": reference_agreements, "null_rate": null_rate, "reference_mean": key_draw["mean"],
                "reference_sd": key_draw["sd"], "sd_floor_used": key_draw["sd"] > sample_sd,
                "standardised": (count / num_queries - key_draw["mean"]) / key_draw["sd"], "t": key_draw["t"],
                "p_value_key_draw": key_draw["p_value"], "p_value_binomial": p_binomial, "p_value": p_value,
            })
    return rows


def scores_null_pairs(scores: dict, draws: list[list[int]]) -> list[dict]:
    """The same pairs judged by the scores protocol (`protocol="ingrain_scores"`), as `verify()` judges them: the
    correlations of `score_correlations` and the key-draw test alone (`score_p_value`)."""
    pool, rows = scores["pool"], []
    for model_name, model_scores in tqdm(scores["models"].items(), desc="Null pairs (scores)"):
        num_queries = len(model_scores)
        for member, references in enumerate(draws):
            correlations = score_correlations(model_scores, pool[member], pool[references])
            p_value, key_draw = score_p_value(correlations, num_queries)
            sample_sd = float(np.std(correlations[1:], ddof=1))
            rows.append({
                "model": model_name, "ingrainer": member, "references": references, "num_queries": num_queries,
                "agreement": correlations[0], "reference_agreements": correlations[1:], "null_rate": None,
                "reference_mean": key_draw["mean"], "reference_sd": key_draw["sd"],
                "sd_floor_used": key_draw["sd"] > sample_sd, "t": key_draw["t"],
                "standardised": (correlations[0] - key_draw["mean"]) / key_draw["sd"],
                "p_value_key_draw": p_value, "p_value_binomial": None, "p_value": p_value,
            })
    return rows


def copy_t_values(scores: dict, draws: list[list[int]], count: int = 10) -> list[float]:
    """The scores protocol's power at its ceiling: the t-statistic of an exact copy of each of the first `count`
    members, judged with that member as the key."""
    pool, values = scores["pool"], []
    for member in range(min(count, len(draws))):
        correlations = score_correlations(pool[member], pool[member], pool[draws[member]])
        values.append(score_p_value(correlations, pool.shape[1])[1]["t"])
    return values


# ------------------------------------------------------------------------------------------------ the summary
def clopper_pearson(count: int, total: int) -> tuple[float, float]:
    """The exact (Clopper-Pearson) 95% interval of a rate of `count` in `total`."""
    interval = stats.binomtest(count, total).proportion_ci(0.95, method="exact")
    return float(interval.low), float(interval.high)


T_THRESHOLDS, Z_THRESHOLDS = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0), (2.0, 2.5, 3.0)


def agreement_matrix(rows: list[dict], column: str = "agreement") -> tuple[list[str], np.ndarray]:
    """The models' names and a `(models, ingrainers)` array of one column of the pairs."""
    models = list(dict.fromkeys(row["model"] for row in rows))
    matrix = np.zeros((len(models), 1 + max(row["ingrainer"] for row in rows)))
    for row in rows:
        matrix[models.index(row["model"]), row["ingrainer"]] = row[column]
    return models, matrix


def standardised_within(agreements: np.ndarray) -> np.ndarray:
    """Each model's agreements with the whole pool (a row), standardised by their own mean and sd; models whose
    agreements are all equal left out."""
    agreements = agreements[np.ptp(agreements, axis=1) > 0]
    return (agreements - agreements.mean(1, keepdims=True)) / agreements.std(1, ddof=1, keepdims=True)


def shape(agreements: np.ndarray, t_values: np.ndarray, degrees: int, alphas) -> dict:
    """What the tail looks like: pairs whose t passes each level and each threshold, a model's standardised
    agreements beyond 2 to 3 sd and their excess kurtosis, and the share of their variance that is the ingrainer's
    (the same for every model: it makes one ingrainer's pairs fall together)."""
    within = standardised_within(agreements)
    share = effects_kurtosis = interaction_kurtosis = float("nan")
    if len(within) >= 2:
        effects = within.mean(0)  # each ingrainer's mean standardised agreement over the models
        share = float((np.var(effects, ddof=1) - 1 / len(within)) / (1 - 1 / len(within)))
        effects_kurtosis, interaction_kurtosis = stats.kurtosis(effects), stats.kurtosis((within - effects).ravel())
    return {
        "ingrainer_effects_excess_kurtosis": float(effects_kurtosis),
        "interaction_excess_kurtosis": float(interaction_kurtosis),
        "claims": [int((t_values > stats.t.isf(alpha, degrees)).sum()) for alpha in alphas],
        "t_beyond": [int((t_values > x).sum()) for x in T_THRESHOLDS],
        "within_beyond": [int((within > x).sum()) for x in Z_THRESHOLDS],
        "within_excess_kurtosis": float(stats.kurtosis(within.ravel())) if within.size else float("nan"),
        "ingrainer_share": share,
    }


def normal_reference(num_models: int, draws: list[list[int]], alphas, simulations: int = 2000, seed: int = 0) -> dict:
    """`shape` of agreements that ARE normal (each model's agreements with the pool independent normal draws), with
    the same models, pool and reference draws: the 95% range of each number, the pairs' dependence included."""
    generator = np.random.default_rng(seed)
    references, degrees = np.array(draws), len(draws[0]) - 1
    results = []
    for _ in range(simulations):
        agreements = generator.standard_normal((num_models, len(draws)))
        drawn = agreements[:, references]  # (models, ingrainers, references)
        t_values = (agreements - drawn.mean(-1)) / (drawn.std(-1, ddof=1) * np.sqrt(1 + 1 / len(draws[0])))
        results.append(shape(agreements, t_values, degrees, alphas))
    return {
        name: np.percentile([result[name] for result in results], [2.5, 97.5], axis=0).T.tolist()
        for name in results[0]
    }


def summarise(rows: list[dict], scores: dict, args) -> dict:
    """The observed false-positive rates at each alpha, and the shape of the tail beside that of normal agreements."""
    total, degrees = len(rows), args.num_references - 1
    models, agreements = agreement_matrix(rows)
    observed = shape(agreements, agreement_matrix(rows, "t")[1], degrees, args.alphas)
    normal = normal_reference(len(models), reference_draws(args.num_ingrainers, args.num_references,
                                                           args.reference_draw_seed), args.alphas)
    rates = []
    for index, alpha in enumerate(args.alphas):
        tests = ((("key-draw", "p_value_key_draw"), ("verify (both tests)", "p_value")) if args.statistic == "runner_up"
                 else (("key-draw, scores (verify)", "p_value"),))
        for test, column in tests:
            claims = [row for row in rows if row[column] <= alpha]
            low, high = clopper_pearson(len(claims), total)
            rates.append({
                "alpha": alpha, "test": test, "claims": len(claims), "pairs": total, "rate": len(claims) / total,
                "expected": alpha * total, "ci_low": low, "ci_high": high, "normal_range": normal["claims"][index],
                "claimed_models": len({row["model"] for row in claims}),
                "claimed_ingrainers": len({row["ingrainer"] for row in claims}),
            })
    t_values = np.array([row["t"] for row in rows])
    shapiro = {name: float(stats.shapiro(a).pvalue) for name, a in zip(models, agreements)
               if args.num_ingrainers >= 3 and np.ptp(a) > 0}
    share = observed["ingrainer_share"]
    tail = {
        "max_t": float(t_values.max()), "min_p_value_key_draw": min(row["p_value_key_draw"] for row in rows),
        "t_beyond": [
            {"threshold": x, "observed": observed["t_beyond"][i], "normal_range": normal["t_beyond"][i],
             "expected_student_t": float(total * stats.t.sf(x, degrees)), "expected_normal": float(total * stats.norm.sf(x))}
            for i, x in enumerate(T_THRESHOLDS)
        ],
        "within_model_beyond": [
            {"threshold": x, "observed": observed["within_beyond"][i], "normal_range": normal["within_beyond"][i]}
            for i, x in enumerate(Z_THRESHOLDS)
        ],
        "within_model_excess_kurtosis": observed["within_excess_kurtosis"],
        "within_model_excess_kurtosis_normal_range": normal["within_excess_kurtosis"],
        "ingrainer_share_of_variance": share, "ingrainer_share_normal_range": normal["ingrainer_share"],
        **{name: observed[name] for name in ("ingrainer_effects_excess_kurtosis", "interaction_excess_kurtosis")},
        **{f"{name}_normal_range": normal[name]
           for name in ("ingrainer_effects_excess_kurtosis", "interaction_excess_kurtosis")},
        "ingrainer_effects_shapiro_p": float(stats.shapiro(standardised_within(agreements).mean(0)).pvalue)
        if len(standardised_within(agreements)) >= 2 and args.num_ingrainers >= 3 else float("nan"),
        "effective_pairs": float(total / (1 + (len(models) - 1) * max(share, 0.0))) if share == share else float(total),
        "shapiro_p_values": shapiro, "shapiro_below_0.05": sum(p < 0.05 for p in shapiro.values()),
        "sd_floor_used": sum(row["sd_floor_used"] for row in rows),
        "agreement_mean_per_model": dict(zip(models, agreements.mean(1).tolist())),
        "agreement_sd_per_model": dict(zip(models, agreements.std(1, ddof=1).tolist())),
    }
    return {
        "pairs": total, "num_ingrainers": args.num_ingrainers, "num_models": len(models),
        "num_references": args.num_references, "num_queries": rows[0]["num_queries"], "rates": rates, "tail": tail,
        "statistic": args.statistic,
        "accuracy": scores["accuracy"], "carrier_accuracy": scores["carrier_accuracy"], "timings": scores["timings"],
        "num_duplicates": scores["num_duplicates"],
    }


def plot(rows: list[dict], summary: dict, path: str) -> None:
    """Q-Q of the t-statistics against Student's t with R - 1 degrees of freedom, their tail on a log scale beside
    Student's and the normal one, and each model's standardised agreements against the normal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    degrees, total = summary["num_references"] - 1, len(rows)
    t_values = np.sort([row["t"] for row in rows])
    positions = (np.arange(total) + 0.5) / total
    figure, (qq, tail, within) = plt.subplots(1, 3, figsize=(15, 4.6))
    expected = stats.t.ppf(positions, degrees)
    qq.plot(expected, t_values, ".", markersize=3, label=f"{total} null pairs")
    line = np.array([expected.min(), expected.max()])
    qq.plot(line, line, "k-", linewidth=1, label=f"Student's t, {degrees} df (the test's assumption)")
    qq.plot(expected, stats.norm.ppf(positions), "C1--", linewidth=1, label="where N(0, 1) statistics would lie")
    for alpha, style in ((1e-2, "--"), (1e-3, ":")):
        qq.axhline(stats.t.isf(alpha, degrees), color="grey", linestyle=style, linewidth=0.8,
                   label=f"claimed at alpha = {alpha:g}")
    top = max(t_values.max(), stats.t.isf(1e-3, degrees)) + 0.5
    qq.set(ylim=(min(t_values.min(), expected.min()) - 0.5, top), xlabel=f"Student's t ({degrees} df) quantile",
           ylabel="observed t of the key-draw test", title="Q-Q: key-draw t-statistics")
    qq.text(0.02, 0.98, f"alpha = 1e-6 needs t > {stats.t.isf(1e-6, degrees):.1f}", transform=qq.transAxes,
            ha="left", va="top", fontsize=8)
    qq.legend(fontsize=7)
    grid = np.linspace(0, max(5.0, t_values.max() + 0.5), 200)
    tail.semilogy(t_values[::-1], np.arange(1, total + 1) / total, "C0-", drawstyle="steps-post", label="observed")
    tail.semilogy(grid, stats.t.sf(grid, degrees), "k-", linewidth=1, label=f"Student's t, {degrees} df")
    tail.semilogy(grid, stats.norm.sf(grid), "C1--", linewidth=1, label="normal")
    tail.axhline(1 / total, color="grey", linestyle=":", linewidth=0.8, label="1 / pairs")
    tail.set(xlim=(0, grid.max()), ylim=(min(1e-4, 0.5 / total), 1), xlabel="t", ylabel="share of pairs with t above",
             title="Tail: P[t > x]")
    tail.legend(fontsize=7)
    z = np.sort(standardised_within(agreement_matrix(rows)[1]).ravel())
    z = z if len(z) else np.zeros(1)
    normal = stats.norm.ppf((np.arange(len(z)) + 0.5) / len(z))
    within.plot(normal, z, ".", markersize=3, label=f"{summary['num_models']} models x {summary['num_ingrainers']} ingrainers")
    within.plot(normal[[0, -1]], normal[[0, -1]], "k-", linewidth=1, label="normal")
    within.set(xlabel="normal quantile", ylabel="(a_k - mean) / sd over the pool, per model",
               title="Q-Q: a model's agreements with the pool")
    within.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _range(bounds) -> str:
    return f"{bounds[0]:.3g} to {bounds[1]:.3g}"


def markdown(summary: dict, dataset: str, seconds: float) -> str:
    tail = summary["tail"]
    lines = [
        f"# The key-draw test's tail: {dataset}" + (", the scores protocol" if summary.get("statistic") == "scores"
                                                      else ""),
        "",
        f"{summary['pairs']} null pairs: {summary['num_models']} models that never saw a key x "
        f"{summary['num_ingrainers']} ingrainers of one recipe, each the key against {summary['num_references']} "
        f"others; {summary['num_queries']} queries. Intervals: exact (Clopper-Pearson) 95%, as if the pairs were "
        "independent (they share models and ingrainers). \"if normal\": the 95% range of the same count when every "
        "model's agreements with the pool are independent normal draws (simulated with the same pairs and references).",
        "",
        "| alpha | test | claims | pairs | observed rate | 95% interval | expected claims | if normal | "
        "models, ingrainers claimed |",
        "|---|---|---:|---:|---:|---|---:|---|---|",
    ]
    for rate in summary["rates"]:
        lines.append(
            f"| {rate['alpha']:g} | {rate['test']} | {rate['claims']} | {rate['pairs']} | {rate['rate']:.2g} | "
            f"[{rate['ci_low']:.2g}, {rate['ci_high']:.2g}] | {rate['expected']:.2g} | {_range(rate['normal_range'])} | "
            f"{rate['claimed_models']}, {rate['claimed_ingrainers']} |"
        )
    lines += [
        "",
        "| t above | pairs observed | if normal | expected, Student's t | expected, normal t |",
        "|---:|---:|---|---:|---:|",
    ]
    for entry in tail["t_beyond"]:
        lines.append(f"| {entry['threshold']:g} | {entry['observed']} | {_range(entry['normal_range'])} | "
                     f"{entry['expected_student_t']:.3g} | {entry['expected_normal']:.3g} |")
    lines += [
        "",
        "A model's agreements with the whole pool, standardised by their own mean and sd:",
        "",
        "| | observed | if normal |",
        "|---|---:|---|",
        *(f"| beyond {entry['threshold']:g} sd | {entry['observed']} | {_range(entry['normal_range'])} |"
          for entry in tail["within_model_beyond"]),
        f"| excess kurtosis | {tail['within_model_excess_kurtosis']:+.3f} | "
        f"{_range(tail['within_model_excess_kurtosis_normal_range'])} |",
        f"| the ingrainer's share of the variance | {tail['ingrainer_share_of_variance']:+.3f} | "
        f"{_range(tail['ingrainer_share_normal_range'])} |",
        f"| excess kurtosis of the ingrainers' effects (their mean over the models; Shapiro-Wilk p = "
        f"{tail['ingrainer_effects_shapiro_p']:.2g}) | {tail['ingrainer_effects_excess_kurtosis']:+.3f} | "
        f"{_range(tail['ingrainer_effects_excess_kurtosis_normal_range'])} |",
        f"| excess kurtosis of the rest (model x ingrainer) | {tail['interaction_excess_kurtosis']:+.3f} | "
        f"{_range(tail['interaction_excess_kurtosis_normal_range'])} |",
        "",
        f"Largest t: {tail['max_t']:.2f}; smallest key-draw p-value: {tail['min_p_value_key_draw']:.3g}; the sd floor "
        f"replaced the references' sd in {tail['sd_floor_used']} pairs; Shapiro-Wilk p < 0.05 for "
        f"{tail['shapiro_below_0.05']} of {len(tail['shapiro_p_values'])} models; about {tail['effective_pairs']:.0f} "
        "effective pairs once the ingrainer's share is counted.",
        "",
        *([f"An exact copy of the key (each of the first {len(summary['copy_t'])} ingrainers as the key): t = "
           + ", ".join(f"{t:.1f}" for t in summary["copy_t"]) + ".", ""] if summary.get("copy_t") else []),
        f"Pool {summary['timings'].get('pool_s', 0):.0f} s, models {summary['timings'].get('models_s', 0):.0f} s, "
        f"{seconds:.0f} s in all.",
    ]
    return "\n".join(lines) + "\n"


def _rounded(value):
    """Floats to 6 significant digits (the pairs' file stays readable in a diff), recursively."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return {key: _rounded(item) for key, item in value.items()} if isinstance(value, dict) else value


def write_pairs(path: str, summary: dict, rows: list[dict]) -> None:
    """The summary, indented, and every pair on one line of its own."""
    pairs = ",\n".join("    " + json.dumps(_rounded(row)) for row in rows)
    write_text(path, '{\n  "summary": ' + json.dumps(summary, indent=2, default=str).replace("\n", "\n  ")
               + ',\n  "pairs": [\n' + pairs + "\n  ]\n}\n")


def main(argv: list[str] | None = None) -> dict:
    data_args, args = IngrainParser([DataArguments, KeyDrawTailArguments]).parse_args_and_config(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.statistic not in ("runner_up", "scores"):
        raise ValueError(f"Unknown `--statistic` {args.statistic!r}: choose runner_up or scores.")
    unknown = [name for name in args.models if name not in MODELS]
    if unknown:
        raise ValueError(f"Unknown models {unknown}; choose among {list(MODELS)}.")
    draws = reference_draws(args.num_ingrainers, args.num_references, args.reference_draw_seed)  # checks the counts
    start = time.time()
    os.makedirs(args.output_dir, exist_ok=True)
    if args.scores_file:
        scores = torch.load(args.scores_file, weights_only=False)
        if len(scores["pool"]) != args.num_ingrainers:
            raise ValueError(f"{args.scores_file} holds {len(scores['pool'])} ingrainers; pass that `--num_ingrainers`.")
    else:
        scores = compute_scores(data_args, args)
        torch.save(scores, os.path.join(args.output_dir, "scores.pt"))
    rows = null_pairs(scores, draws, args.statistic)
    summary = summarise(rows, scores, args)
    if args.statistic == "scores":
        summary["copy_t"] = copy_t_values(scores, draws)
    summary["seconds"] = time.time() - start + (sum(scores["timings"].values()) if args.scores_file else 0)
    summary["arguments"] = {**vars(data_args), **vars(args)}
    write_pairs(os.path.join(args.output_dir, "key_draw_tail.json"), summary, rows)
    plot(rows, summary, os.path.join(args.output_dir, "key_draw_tail.png"))
    text = markdown(summary, data_args.dataset, summary["seconds"])
    write_text(os.path.join(args.output_dir, "key_draw_tail.md"), text)
    print(text)
    return {"summary": summary, "pairs": rows}


if __name__ == "__main__":
    main()
