"""Watermark-removal attacks, one file each: what a model thief may do to a published model.

Every attack returns a model that the same [`verify`] judges, so a model owner can test a watermark against them
before publishing. They compose: `FineTuneAttack(PruneAttack(model, 0.5).run(), mode="FTAL").run(data)`. Extraction
without the owner's data (`ExtractionAttack`: other data, synthetic queries, a query budget, other architectures,
ensembles), overwriting with the thief's own key (`OverwriteAttack`) and the removal attacks of 2023-2025 (`WRKAttack`,
`DehydrationAttack`, `RemovalNetAttack`) are here too. The
distillation attack is a `Trainer` pair, kept with the others in `hf_ingrain.trainer` and exported here too.

Each attack's file declares it once (`ATTACK = AttackSpec(...)`: its parameters with their help, its benchmark
columns), and the `hf-ingrain attack` subcommands and the benchmark's columns are built from that registry
([`~hf_ingrain.attacks.registry`]).
"""

from ..trainer.distillation_config import DistillationConfig
from ..trainer.distillation_trainer import DistillationTrainer
from .dehydration import DehydrationAttack
from .ensemble import EnsembleModel
from .extraction import ExtractionAttack
from .fine_prune import FinePruneAttack
from .finetune import FineTuneAttack
from .input_transform import InputTransformAttack, TransformedInputModel
from .noise import WeightNoiseAttack
from .overwrite import OverwriteAttack
from .prune import PruneAttack
from .quantize import QuantizeAttack
from .query_sources import make_queries
from .registry import AttackSpec, BenchmarkColumns, BenchmarkContext, register_attack
from .removalnet import RemovalNetAttack
from .students import build_student
from .wrk import WRKAttack

__all__ = [
    "AttackSpec", "BenchmarkColumns", "BenchmarkContext", "DehydrationAttack", "DistillationConfig",
    "DistillationTrainer", "EnsembleModel", "ExtractionAttack", "FinePruneAttack", "FineTuneAttack",
    "InputTransformAttack", "OverwriteAttack", "PruneAttack", "QuantizeAttack", "RemovalNetAttack",
    "TransformedInputModel", "WRKAttack", "WeightNoiseAttack", "build_student", "make_queries", "register_attack",
]
