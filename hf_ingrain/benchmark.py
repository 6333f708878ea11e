"""The paper's comparison as one resumable run: every scheme, every attack, one table, on the same data.

[`run_benchmark`] trains one model per watermarking scheme (an unwatermarked reference, the baselines of
`hf_ingrain.watermarks`, ingrain at several λ), attacks each with every removal attack of `hf_ingrain.attacks`, and
verifies every model before and after with its own scheme's test. Each cell (scheme x attack) is written to
`cells/<scheme>/<attack>.json` as it finishes and each trained model to `models/<scheme>/`, so an interrupted run
picks up where it stopped. Keys are never written: they are re-derived from the run's seed, and only their
commitments are recorded. `hf-ingrain demo` is this run at a small scale on the embedded data; `hf-ingrain
benchmark` runs it from a YAML config at full scale (on a GPU when there is one).
"""

import copy
import json
import logging
import os
import platform
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import Trainer, TrainingArguments

from .attacks import (
    FinePruneAttack, FineTuneAttack, InputTransformAttack, PruneAttack, QuantizeAttack, WeightNoiseAttack,
)
from .data import load_image_dataset
from .files import atomic_folder, write_json, write_text
from .hashing import canonical_json
from .keys import WatermarkKey
from .models import build_classifier
from .suspects import collect_scores, load_model
from .trainer import DistillationConfig, DistillationTrainer, IngrainConfig, IngrainTrainer, UchidaConfig, UchidaTrainer
from .verification import format_p_value, verify
from .watermarks import AdiKey, UchidaKey, ZhangKey, embed_trigger_set

logger = logging.getLogger(__name__)

ATTACKS = ("distill_T1", "distill_T4", "distill_T4_small", "hard_label", "finetune_FTAL", "prune_50", "quantize_4bit")
# Columns a config may add to the default grid (the demo's time budget leaves them out)
OPTIONAL_ATTACKS = (
    "finetune_ls_0.1", "fineprune_50", "noise_0.05", "noise_0.1", "noise_0.3", "jpeg_50", "blur_1.0", "input_noise_0.1",
)
BASELINES = ("zhang_content", "zhang_noise", "zhang_unrelated", "adi", "uchida")
CONFIG_FILE = "benchmark_config.json"
# Fields that choose which cells exist, not what a cell computes: a resumed run may change them.
GRID_FIELDS = ("schemes", "attacks")


@dataclass
class ExperimentConfig:
    r"""
    Scale and settings of a benchmark run. Every field is a flag of `hf-ingrain benchmark` and a key of its
    `--config` YAML file.

    Args:
        dataset (`str`): `"mnist-5k"` (embedded), a Hub id or a local folder, as for `load_image_dataset`.
        seed (`int`): seed of the splits, the keys and the models.
        max_examples (`int`, *optional*): keep at most this many examples per source split.
        epochs (`int`): training epochs of every watermarked model.
        attack_epochs (`int`): epochs of each distillation attack.
        finetune_epochs (`int`): epochs of the fine-tuning attack.
        batch_size (`int`), learning_rate (`float`): optimisation of every model.
        hidden_channels (`list[int]`), hidden_size (`int`): size of the SmallCNN of the owner (and of same-architecture
            students); the small students halve both.
        num_carriers (`int`), ingrainer_steps (`int`), num_reference_keys (`int`): the ingrain key (its reference
            ingrainers serve the key-draw test of `verify`).
        ingrain_lambdas (`list[float]`): λ values of ingrain, one model each.
        ingrain_temperature (`float`): the ingrain temperature `T`.
        schemes (`list[str]`): baselines to include (default all).
        attacks (`list[str]`): attacks to run (default all).
        verify_alpha (`float`): significance level of every test.
        temperature (`float`, *optional*): deprecated name of `ingrain_temperature`.
        alpha (`float`, *optional*): deprecated name of `verify_alpha`.
    """

    dataset: str = field(default="mnist-5k", metadata={"help": "mnist-5k (embedded), a Hub id or a local folder."})
    seed: int = field(default=0, metadata={"help": "Seed of the splits, the keys and the models."})
    max_examples: int | None = field(default=None, metadata={"help": "At most this many examples per source split."})
    epochs: int = field(default=15, metadata={"help": "Training epochs of every watermarked model."})
    attack_epochs: int = field(default=8, metadata={"help": "Epochs of each distillation attack."})
    finetune_epochs: int = field(default=3, metadata={"help": "Epochs of the fine-tuning attack."})
    batch_size: int = field(default=64, metadata={"help": "Batch size of every model."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of every model."})
    hidden_channels: list[int] = field(default_factory=lambda: [16, 32], metadata={"help": "SmallCNN channels."})
    hidden_size: int = field(default=64, metadata={"help": "SmallCNN hidden layer width."})
    num_carriers: int = field(default=100, metadata={"help": "Carriers of the ingrain key."})
    ingrainer_steps: int = field(default=600, metadata={"help": "Training steps of the ingrainer."})
    num_reference_keys: int = field(default=16, metadata={"help": "Reference ingrainers of the ingrain key."})
    ingrain_lambdas: list[float] = field(default_factory=lambda: [0.25, 0.5], metadata={"help": "λ values of ingrain."})
    ingrain_temperature: float = field(default=4.0, metadata={"help": "Ingrain temperature T."})
    schemes: list[str] = field(default_factory=lambda: list(BASELINES), metadata={"help": f"Of {list(BASELINES)}."})
    attacks: list[str] = field(
        default_factory=lambda: list(ATTACKS), metadata={"help": f"Of {list(ATTACKS + OPTIONAL_ATTACKS)}."}
    )
    verify_alpha: float = field(default=1e-6, metadata={"help": "Significance level of every test."})
    temperature: float | None = field(default=None, metadata={"help": "Deprecated: use --ingrain_temperature."})
    alpha: float | None = field(default=None, metadata={"help": "Deprecated: use --verify_alpha."})

    def __post_init__(self):
        for old, new in (("temperature", "ingrain_temperature"), ("alpha", "verify_alpha")):
            if getattr(self, old) is not None:
                warnings.warn(f"ExperimentConfig `{old}` is deprecated: use `{new}`.", FutureWarning, stacklevel=3)
                setattr(self, new, getattr(self, old))
                setattr(self, old, None)
        unknown = sorted(set(self.schemes) - set(BASELINES))
        if unknown:
            raise ValueError(f"Unknown schemes {unknown}; choose among {list(BASELINES)}.")
        unknown = sorted(set(self.attacks) - set(ATTACKS) - set(OPTIONAL_ATTACKS))
        if unknown:
            raise ValueError(f"Unknown attacks {unknown}; choose among {list(ATTACKS + OPTIONAL_ATTACKS)}.")
        if min(self.epochs, self.attack_epochs, self.finetune_epochs, self.batch_size) < 1:
            raise ValueError("epochs, attack_epochs, finetune_epochs and batch_size must all be >= 1.")
        if any(value < 0 for value in self.ingrain_lambdas):
            raise ValueError(f"`ingrain_lambdas` must be >= 0, got {self.ingrain_lambdas}.")
        if not 0 < self.verify_alpha < 1:
            raise ValueError(f"`verify_alpha` must be in (0, 1), got {self.verify_alpha}.")

    @classmethod
    def from_yaml(cls, path: str, **overrides) -> "ExperimentConfig":
        """The config of a YAML file (keys are field names), with `overrides` (those not `None`) on top."""
        from .scripts import IngrainParser

        parser = IngrainParser([cls])
        parser.set_defaults_from_yaml(path)
        flags = [item for name, value in overrides.items() if value is not None for item in (f"--{name}", str(value))]
        return parser.parse_args_and_config(flags)[0]

    def cell_fields(self) -> dict:
        """What every cell's result depends on: all fields but the grid's rows and columns (`GRID_FIELDS`)."""
        return {k: v for k, v in asdict(self).items() if k not in GRID_FIELDS + ("temperature", "alpha")}


class _Experiment:
    """The data, keys and training recipes shared by every cell of one run."""

    def __init__(self, config: ExperimentConfig, output_dir: str):
        self.config, self.output_dir = config, output_dir
        self.splits = load_image_dataset(config.dataset, seed=config.seed, max_examples=config.max_examples)
        self.num_labels = len(self.splits["owner"].features["labels"].names)
        self.input_shape = tuple(self.splits["owner"][0]["pixel_values"].shape)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._keys = {}

    # -- models -----------------------------------------------------------------------------------------------
    def new_model(self, seed: int, small: bool = False):
        torch.manual_seed(seed)
        divisor = 2 if small else 1
        return build_classifier(
            "small_cnn", num_labels=self.num_labels, input_shape=self.input_shape,
            hidden_sizes=[c // divisor for c in self.config.hidden_channels],
            hidden_size=self.config.hidden_size // divisor,
        )

    def args(self, scratch: str, seed: int, epochs: int, **extra) -> dict:
        return dict(
            output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=self.config.batch_size,
            learning_rate=self.config.learning_rate, report_to="none", save_strategy="no", logging_strategy="no",
            disable_tqdm=True, seed=seed, use_cpu=self.device == "cpu", **extra,
        )

    # -- keys (re-derived from the seed, never written) ----------------------------------------------------------
    def key(self, scheme: str):
        if scheme not in self._keys:
            seed = self.config.seed
            if scheme.startswith("ingrain") or scheme == "reference":
                key = WatermarkKey.generate(self.num_labels, self.input_shape, self.config.num_carriers, seed=seed)
                key.train_ingrainer(
                    benign_dataset=self.splits["owner"], num_steps=self.config.ingrainer_steps,
                    num_reference_keys=self.config.num_reference_keys,
                )
            elif scheme.startswith("zhang_"):
                key = ZhangKey.generate(self.splits["owner"], kind=scheme.split("_", 1)[1], seed=seed)
            elif scheme == "adi":
                key = AdiKey.generate(self.num_labels, self.input_shape, seed=seed)
            elif scheme == "uchida":
                key = UchidaKey.generate(self.new_model(seed + 1), seed=seed)
            # every ingrain model shares the one ingrain key
            shared = scheme.startswith("ingrain") or scheme == "reference"
            self._keys.update({s: key for s in (["reference"] + self._ingrain_names() if shared else [scheme])})
        return self._keys[scheme]

    def _ingrain_names(self):
        return [f"ingrain_lambda_{value:g}" for value in self.config.ingrain_lambdas]

    def schemes(self) -> list[str]:
        return ["reference"] + list(self.config.schemes) + self._ingrain_names()

    # -- training a watermarked model ------------------------------------------------------------------------------
    def train(self, scheme: str, scratch: str):
        owner, seed = self.splits["owner"], self.config.seed + 1
        model, key = self.new_model(seed), self.key(scheme)
        args = self.args(scratch, seed, self.config.epochs)
        if scheme == "reference":  # no watermark; tested with the ingrain key: a false-positive check
            Trainer(model=model, args=TrainingArguments(**args), train_dataset=owner).train()
        elif scheme.startswith("ingrain"):
            ingrain_lambda = float(scheme.rsplit("_", 1)[1])
            config = IngrainConfig(**args, ingrain_lambda=ingrain_lambda, ingrain_temperature=self.config.ingrain_temperature)
            IngrainTrainer(model=model, args=config, train_dataset=owner, ingrainer=key).train()
        elif scheme == "uchida":
            UchidaTrainer(model=model, args=UchidaConfig(**args), key=key, train_dataset=owner).train()
        else:
            embed_trigger_set(model, key, owner, TrainingArguments(**args))
        return model.eval()

    def verify(self, scheme: str, model):
        """The scheme's own test (the ingrain test for the reference); `None` where a white-box test cannot apply."""
        key = self.key(scheme)
        if key is None:
            return None
        if scheme.startswith("ingrain") or scheme == "reference":
            return verify(model, key, self.splits["test"], alpha=self.config.verify_alpha)
        try:
            return key.verify(model, alpha=self.config.verify_alpha)
        except ValueError as error:  # e.g. Uchida's layer does not exist in a student of another architecture
            logger.info("%s: verification not applicable (%s)", scheme, error)
            return None

    # -- attacks -------------------------------------------------------------------------------------------------
    def attack(self, name: str, teacher, scratch: str):
        seed, attacker = self.config.seed + 7, self.splits["attacker"]
        if name.startswith("distill") or name == "hard_label":
            student = self.new_model(seed, small=name.endswith("small"))
            extra = (
                dict(teacher_output="label")
                if name == "hard_label"
                else dict(temperature=float(name.split("_")[1][1:]), teacher_output="logits")
            )
            args = DistillationConfig(
                **self.args(scratch, seed, self.config.attack_epochs), teacher_weight=1.0, **extra
            )
            # the trainer freezes its teacher: give it a copy, the model goes on to the next attacks
            DistillationTrainer(model=student, teacher=copy.deepcopy(teacher), args=args, train_dataset=attacker).train()
            return student.eval()
        if name == "finetune_FTAL":
            return FineTuneAttack(
                teacher, mode="FTAL", num_train_epochs=self.config.finetune_epochs, seed=seed,
            ).run(attacker)
        if name == "finetune_ls_0.1":  # retraining with label smoothing: FTAL on smoothed targets
            return FineTuneAttack(
                teacher, mode="FTAL", num_train_epochs=self.config.finetune_epochs, seed=seed,
                training_args={"label_smoothing_factor": 0.1},
            ).run(attacker)
        if name == "fineprune_50":
            return FinePruneAttack(
                teacher, rate=0.5, num_train_epochs=self.config.finetune_epochs, seed=seed,
            ).run(attacker)
        if name == "prune_50":
            return PruneAttack(teacher, rate=0.5).run()
        if name == "quantize_4bit":
            return QuantizeAttack(teacher, bits=4, method="uniform").run()
        if name.startswith(("jpeg_", "blur_", "input_noise_")):  # the data sets here are in [0, 1]
            transform, strength = name.rsplit("_", 1)
            transform = {"input_noise": "noise"}.get(transform, transform)
            return InputTransformAttack(teacher, transform=transform, strength=float(strength), seed=seed).run()
        if name.startswith("noise_"):
            return WeightNoiseAttack(teacher, scale=float(name.split("_")[1]), seed=seed).run()
        raise ValueError(f"Unknown attack {name!r}.")

    def accuracy(self, model) -> float:
        scores, labels = collect_scores(model, self.splits["test"])
        return (scores.argmax(-1) == labels).float().mean().item()


def _cell(experiment: _Experiment, scheme: str, attack: str, model) -> dict:
    result = experiment.verify(scheme, model)
    return {
        "scheme": scheme,
        "attack": attack,
        "test_accuracy": experiment.accuracy(model),
        "verified": None if result is None else bool(result.verified),
        "p_value": None if result is None else result.p_value,
        "score": None if result is None else result.agreement,
        "null_rate": None if result is None else result.null_rate,
        "protocol": None if result is None else result.protocol,
    }


def _trained_model(experiment: _Experiment, scheme: str, scratch: str):
    """Trains the scheme's model, or loads it from `models/<scheme>` when an earlier run saved it."""
    folder = os.path.join(experiment.output_dir, "models", scheme)
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return load_model(folder)
    model = experiment.train(scheme, scratch)
    with atomic_folder(folder, replace=True) as staging:
        model.save_pretrained(staging, safe_serialization=True)
    return model


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
    from .plots import plot_lambda_tradeoff, plot_robustness

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
        "machine": _machine(),
    }
    write_json(os.path.join(output_dir, "results.json"), results)
    write_text(os.path.join(output_dir, "results.md"), results_markdown(results))
    plot_robustness(results, os.path.join(output_dir, "robustness.png"))
    plot_lambda_tradeoff(results, os.path.join(output_dir, "lambda_tradeoff.png"))
    return results


def _machine() -> str:
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
        f"{results['date']}, {results['machine']}, {results['seconds']:.0f} s.\n"
    )
