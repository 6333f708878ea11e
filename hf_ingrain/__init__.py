"""hf_ingrain: watermarks that survive knowledge distillation, for Hugging Face models.

Implements Ingrain (Yang, Dang and Chang 2019, https://huggingface.co/papers/1906.06046) as a drop-in `Trainer`.
The folder tree is the threat model: `trainer/` and `keys/` defend, `attacks/` attack, `verification.py` and
`calibration.py` judge (through `suspects/`, the one way in to a model that is not the caller's own), `hub.py` and
`model_card.py` publish.
"""

__version__ = "0.1.0"

from .calibration import NullCalibration, calibrate_null
from .keys import WatermarkKey
from .models import register_auto_classes
from .trainer import DistillationConfig, DistillationTrainer, IngrainConfig, IngrainTrainer
from .verification import VerificationResult, verify

register_auto_classes()

__all__ = [
    "DistillationConfig",
    "DistillationTrainer",
    "IngrainConfig",
    "IngrainTrainer",
    "NullCalibration",
    "VerificationResult",
    "WatermarkKey",
    "__version__",
    "calibrate_null",
    "verify",
]
