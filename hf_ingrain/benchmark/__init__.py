"""The paper's comparison as one resumable run: every scheme, every attack, one table, on the same data.

[`run_benchmark`] trains one model per watermarking scheme (an unwatermarked reference, the baselines of
`hf_ingrain.watermarks`, ingrain at several λ), attacks each with every removal attack of `hf_ingrain.attacks`, and
verifies every model before and after with its own scheme's test, then tests every key on the unattacked models not
derived from it, the thief's own model included (false claims: none may verify). Each cell (scheme x attack) is
written to `cells/<scheme>/<attack>.json` as it finishes (a false claim to `cells/_false_claims/<key>/<model>.json`)
and each trained model to `models/<scheme>/`, so an interrupted run picks up where it stopped. Keys are never written:
they are re-derived from the run's seed, and only their commitments are recorded. `hf-ingrain demo` is this run at a small scale on the embedded data; `hf-ingrain
benchmark` runs it from a YAML config at full scale (on a GPU when there is one).

Modules: `config` (the grid: schemes, attacks and their families, chains `a+b+c`, and [`ExperimentConfig`]),
`experiment` (the data, keys, models and attacks of one run), `run` ([`run_benchmark`], resumable, and
[`run_benchmark_seeds`], one run per seed) and `report` (the Markdown tables, and the summary over seeds).
"""

from .config import ATTACK_PATTERNS, ATTACKS, BASELINES, OPTIONAL_ATTACKS, ExperimentConfig, check_attack_name
from .experiment import _Experiment  # noqa: F401 (tests replace its methods)
from .report import results_markdown, summarize_seeds, summary_markdown
from .run import CONFIG_FILE, run_benchmark, run_benchmark_seeds

__all__ = [
    "ATTACKS", "ATTACK_PATTERNS", "BASELINES", "CONFIG_FILE", "OPTIONAL_ATTACKS", "ExperimentConfig",
    "check_attack_name", "results_markdown", "run_benchmark", "run_benchmark_seeds", "summarize_seeds",
    "summary_markdown",
]
