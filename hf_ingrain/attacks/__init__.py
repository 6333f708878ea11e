"""Watermark-removal attacks, one file each: what a model thief may do to a published model.

Every attack returns a model that the same [`verify`] judges, so a model owner can test a watermark against them
before publishing. They compose: `FineTuneAttack(PruneAttack(model, 0.5).run(), mode="FTAL").run(data)`.
"""

from .distillation_config import DistillationConfig
from .distillation_trainer import DistillationTrainer
from .finetune import FineTuneAttack
from .prune import PruneAttack
from .quantize import QuantizeAttack

__all__ = ["DistillationConfig", "DistillationTrainer", "FineTuneAttack", "PruneAttack", "QuantizeAttack"]
