"""Watermark-removal attacks, one file each: what a model thief may do to a published model.

Every attack returns a model that the same [`verify`] judges, so a model owner can test a watermark against them
before publishing. They compose: `FineTuneAttack(PruneAttack(model, 0.5).run(), mode="FTAL").run(data)`. The
distillation attack is a `Trainer` pair, kept with the others in `hf_ingrain.trainer` and exported here too.
"""

from ..trainer.distillation_config import DistillationConfig
from ..trainer.distillation_trainer import DistillationTrainer
from .fine_prune import FinePruneAttack
from .finetune import FineTuneAttack
from .input_transform import InputTransformAttack, TransformedInputModel
from .noise import WeightNoiseAttack
from .prune import PruneAttack
from .quantize import QuantizeAttack

__all__ = [
    "DistillationConfig", "DistillationTrainer", "FinePruneAttack", "FineTuneAttack", "InputTransformAttack",
    "PruneAttack", "QuantizeAttack", "TransformedInputModel", "WeightNoiseAttack",
]
