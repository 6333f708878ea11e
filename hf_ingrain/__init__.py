"""hf_ingrain: watermarks that survive knowledge distillation, for Hugging Face models.

Implements Ingrain (Yang, Dang and Chang 2019, https://huggingface.co/papers/1906.06046) as a drop-in `Trainer`.
The folder tree is the threat model: `trainer/` and `keys/` defend, `attacks/` attack, `verification/` judges
(through `suspects/`, the one way in to a model that is not the caller's own), `hub/` publishes, `data/` holds the
data as users have it, and `benchmark/` compares every scheme under every attack.
"""

__version__ = "0.2.0"

from . import _moved
from .keys import WatermarkKey
from .trainer import DistillationConfig, DistillationTrainer, IngrainConfig, IngrainTrainer, WatermarkTakesCallback
from .verification import NullCalibration, VerificationResult, calibrate_null, verify

_moved.install()  # 0.1's module paths (`hf_ingrain.queries`, ...) answer for one more release, with a warning

__all__ = [
    "DistillationConfig",
    "DistillationTrainer",
    "IngrainConfig",
    "IngrainTrainer",
    "NullCalibration",
    "VerificationResult",
    "WatermarkKey",
    "WatermarkTakesCallback",
    "__version__",
    "calibrate_null",
    "verify",
]
