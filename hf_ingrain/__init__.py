"""hf_ingrain: watermarks that survive knowledge distillation, for Hugging Face models.

Implements Ingrain (Yang, Dang and Chang 2019, https://huggingface.co/papers/1906.06046) as a drop-in `Trainer`.
"""

__version__ = "0.1.0"

from .attacks import DistillationConfig, DistillationTrainer
from .ingrain_config import IngrainConfig
from .ingrain_trainer import IngrainTrainer
from .keys import WatermarkKey
from .models import register_auto_classes
from .verification import VerificationResult, calibrate_null, verify

register_auto_classes()

__all__ = [
    "DistillationConfig",
    "DistillationTrainer",
    "IngrainConfig",
    "IngrainTrainer",
    "VerificationResult",
    "WatermarkKey",
    "__version__",
    "calibrate_null",
    "verify",
]
