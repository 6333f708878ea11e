"""The benchmark's grid and settings: its rows (schemes), its columns (the attacks of `hf_ingrain.attacks.registry`,
their families and chains) and [`ExperimentConfig`]."""

import warnings
from dataclasses import asdict, dataclass, field

from ..attacks.registry import check_attack_name, column_names, open_families

# The default grid's columns (the demo's time budget leaves the others out). Every attack's columns are declared in
# its file (`hf_ingrain.attacks.registry`); a config may add any of them, and `a+b+c` chains attacks (each applied
# to the previous one's result) as one column.
ATTACKS = ("distill_T1", "distill_T4", "distill_T4_small", "hard_label", "finetune_FTAL", "prune_50", "quantize_4bit")
OPTIONAL_ATTACKS = tuple(name for name in column_names() if name not in ATTACKS) + ("prune_50+finetune_FTAL+distill_T4",)
# the families that take any name of their pattern: extract_<source>_<budget in thousands>k[_<what the teacher
# exposes>], distill_T<T>_<student architecture>, ensemble_<models averaged>
ATTACK_PATTERNS = tuple(family.compiled for family in open_families())
BASELINES = ("zhang_content", "zhang_noise", "zhang_unrelated", "adi", "uchida")
# The free fingerprints (`hf_ingrain.fingerprints`): rows a config may add; together they protect one plain model of
# its own seed (each attack made once for all of them), judged against `num_fingerprint_references` plain models of
# the owner's recipe.
FINGERPRINTS = ("victim_errors", "boundary", "decision_distance")
# The plain model every fingerprint of a run protects (trained once, its own seed; its folder in `models/`): one
# victim, so each attack is made once for all the fingerprints and they are compared on the same copies.
FINGERPRINT_VICTIM = "_fingerprint_victim"
# Fields that choose which cells exist, or how they are computed, not what a cell computes: a resumed run may change
# them.
GRID_FIELDS = ("schemes", "attacks", "num_proc")


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
        num_carriers (`int`), ingrainer_steps (`int`), ingrainer_batch_size (`int`), num_reference_keys (`int`): the
            ingrain key (its reference ingrainers serve the key-draw test of `verify`); `ingrainer_batch_size` is
            the benign images per step of each ingrainer, the `batch_size` of [`~WatermarkKey.train_ingrainer`].
        ingrainer_hidden_channels (`list[int]`), ingrainer_hidden_size (`int`): size of the SmallCNN the key's
            ingrainer and its references are (the `architecture` of [`~WatermarkKey.train_ingrainer`]); the defaults
            are the package's default ingrainer. At half that width the demo's key trains in 5 minutes instead of 8
            on 2 CPU cores and its λ = 0.5 models lose 1 to 3 points less accuracy, but the key is weaker: 7 of 8
            same-architecture students verified against 8 of 8 (`docs/demo/README.md`).
        ingrain_lambdas (`list[float]`): λ values of ingrain, one model each.
        ingrain_temperature (`float`): the ingrain temperature `T`.
        schemes (`list[str]`): baselines to include (default all): any of `BASELINES`, and of `FINGERPRINTS` (the free
            fingerprints, not in the default grid).
        num_fingerprint_references (`int`): reference models of the fingerprints' key-draw test (plain models of the
            owner's recipe, trained once per run).
        attacks (`list[str]`): attacks to run (default all).
        verify_alpha (`float`): significance level of every test.
        num_proc (`int`): processes computing the grid (the schemes, each with its attacks; the ingrain key's
            ingrainers train as one batched model on every core), sharing the machine's threads. On a few CPU cores
            the small models use threads poorly: on 2 cores the demo's grid took 12 minutes in 2 processes of 1
            thread against 17 in 1 of 2 threads. A cell's result does not depend on it beyond floating-point
            rounding (the thread count changes the order of sums; with one thread per process the cells equal a
            one-thread run's, bit for bit).
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
    ingrainer_batch_size: int = field(default=256, metadata={"help": "Benign images per ingrainer step."})
    ingrainer_hidden_channels: list[int] = field(
        default_factory=lambda: [16, 32], metadata={"help": "SmallCNN channels of the key's ingrainers."}
    )
    ingrainer_hidden_size: int = field(default=64, metadata={"help": "SmallCNN hidden width of the key's ingrainers."})
    num_reference_keys: int = field(default=16, metadata={"help": "Reference ingrainers of the ingrain key."})
    ingrain_lambdas: list[float] = field(default_factory=lambda: [0.25, 0.5], metadata={"help": "λ values of ingrain."})
    ingrain_temperature: float = field(default=4.0, metadata={"help": "Ingrain temperature T."})
    schemes: list[str] = field(default_factory=lambda: list(BASELINES),
                               metadata={"help": f"Of {list(BASELINES + FINGERPRINTS)}."})
    num_fingerprint_references: int = field(default=16, metadata={"help": "Reference models of the fingerprints."})
    attacks: list[str] = field(
        default_factory=lambda: list(ATTACKS),
        metadata={"help": f"Of {list(ATTACKS + OPTIONAL_ATTACKS)}, or chains 'a+b' of them (see ATTACK_PATTERNS)."},
    )
    verify_alpha: float = field(default=1e-6, metadata={"help": "Significance level of every test."})
    num_proc: int = field(default=1, metadata={"help": "Processes computing the grid, sharing the threads."})
    temperature: float | None = field(default=None, metadata={"help": "Deprecated: use --ingrain_temperature."})
    alpha: float | None = field(default=None, metadata={"help": "Deprecated: use --verify_alpha."})

    def __post_init__(self):
        for old, new in (("temperature", "ingrain_temperature"), ("alpha", "verify_alpha")):
            if getattr(self, old) is not None:
                warnings.warn(f"ExperimentConfig `{old}` is deprecated: use `{new}`.", FutureWarning, stacklevel=3)
                setattr(self, new, getattr(self, old))
                setattr(self, old, None)
        unknown = sorted(set(self.schemes) - set(BASELINES + FINGERPRINTS))
        if unknown:
            raise ValueError(f"Unknown schemes {unknown}; choose among {list(BASELINES + FINGERPRINTS)}.")
        if self.num_fingerprint_references < 2:
            raise ValueError(f"`num_fingerprint_references` must be >= 2 (16 for alpha = 1e-6), got "
                             f"{self.num_fingerprint_references}.")
        for attack in self.attacks:
            check_attack_name(attack)
        if min(self.epochs, self.attack_epochs, self.finetune_epochs, self.batch_size) < 1:
            raise ValueError("epochs, attack_epochs, finetune_epochs and batch_size must all be >= 1.")
        if self.num_proc < 1:
            raise ValueError(f"`num_proc` must be >= 1, got {self.num_proc}.")
        sizes = self.ingrainer_hidden_channels + [self.ingrainer_hidden_size]
        if len(self.ingrainer_hidden_channels) != 2 or min(sizes) < 1:
            raise ValueError(
                "`ingrainer_hidden_channels` takes the channels of the ingrainer's two convolution blocks and "
                f"`ingrainer_hidden_size` its hidden width, all >= 1; got {self.ingrainer_hidden_channels} and "
                f"{self.ingrainer_hidden_size}."
            )
        if any(value < 0 for value in self.ingrain_lambdas):
            raise ValueError(f"`ingrain_lambdas` must be >= 0, got {self.ingrain_lambdas}.")
        if not 0 < self.verify_alpha < 1:
            raise ValueError(f"`verify_alpha` must be in (0, 1), got {self.verify_alpha}.")

    @classmethod
    def from_yaml(cls, path: str, **overrides) -> "ExperimentConfig":
        """The config of a YAML file (keys are field names), with `overrides` (those not `None`) on top."""
        from ..scripts import IngrainParser

        parser = IngrainParser([cls])
        parser.set_defaults_from_yaml(path)
        flags = [item for name, value in overrides.items() if value is not None for item in (f"--{name}", str(value))]
        return parser.parse_args_and_config(flags)[0]

    def cell_fields(self) -> dict:
        """What every cell's result depends on: all fields but the grid's rows and columns (`GRID_FIELDS`)."""
        return {k: v for k, v in asdict(self).items() if k not in GRID_FIELDS + ("temperature", "alpha")}


