"""The trainable methods, as trl lays them out: one `<method>_config.py` + `<method>_trainer.py` pair each.

- [`IngrainConfig`] / [`IngrainTrainer`]: the owner's defence, training with the ingrain loss.
- [`DistillationConfig`] / [`DistillationTrainer`]: the distillation attack (also `hf_ingrain.attacks`).
- [`UchidaConfig`] / [`UchidaTrainer`]: the weight-signature baseline (also `hf_ingrain.watermarks`).
- `strength.py`: the watermark's strength while [`IngrainTrainer`] trains ([`WatermarkStrength`]), and
  [`WatermarkTakesCallback`], which trains until it takes; `controller.py`: the ingrain weight that tunes itself
  ([`IngrainWeightController`], `ingrain_lambda_mode="auto"`).
"""

from .controller import IngrainWeightController
from .distillation_config import DistillationConfig
from .distillation_trainer import DistillationTrainer
from .ingrain_config import IngrainConfig
from .ingrain_trainer import IngrainTrainer
from .mixins import AuxiliaryLossMixin, ExtendsTrainingArguments, LoggedMetricsMixin
from .strength import WatermarkStrength, WatermarkTakesCallback
from .uchida_config import UchidaConfig
from .uchida_trainer import UchidaTrainer

__all__ = [
    "AuxiliaryLossMixin",
    "DistillationConfig",
    "DistillationTrainer",
    "ExtendsTrainingArguments",
    "IngrainConfig",
    "IngrainTrainer",
    "IngrainWeightController",
    "LoggedMetricsMixin",
    "UchidaConfig",
    "UchidaTrainer",
    "WatermarkStrength",
    "WatermarkTakesCallback",
]
