"""A strength that tunes itself: the ingrain weight controlled during training (`ingrain_lambda_mode="auto"`).

At every measurement of the watermark's strength (`hf_ingrain.trainer.strength`), [`IngrainWeightController`] moves
the weight λ towards a watermark that verifies with a margin: up by `up` when the p-value predicted at 1,000 queries is
above the target (the watermark is too weak to verify with room to spare), down by `down` when it is more than `band`
powers of ten below it (the model pays accuracy for more watermark than it needs), and not at all in between. The
dead band keeps the weight still against the noise of a prediction from a few hundred examples; the factors are
asymmetric because a watermark that does not take is the failure that matters, and a weight that falls too far comes
back up at the next measurements. λ stays within `[minimum, maximum]`.

The controller's state (λ and its number of updates) is saved in every checkpoint's `trainer_state.json`
(`stateful_callbacks`) and restored when training resumes, whatever `restore_callback_states_from_checkpoint` says, so
a resumed run trains exactly as one that went straight through. Under several processes every process measures the
same examples and the main process's weight is broadcast to the others.

Experimental: measured once (`docs/strength/README.md`), this rule raised λ from 0.5 to 2.5 on a ResNet and to 4 on a
small BERT, because early in training every watermark is weak, and cost far more accuracy than a fixed λ. A rule that
waits for the task to be learned, or reads the trend of the prediction, is the next thing to try.
"""

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


class IngrainWeightController(TrainerCallback, ExportableState):
    r"""
    The ingrain weight of `ingrain_lambda_mode="auto"` (see the module docstring). [`IngrainTrainer`] makes one from
    its arguments; its [`update`] is called with each [`~hf_ingrain.trainer.strength.WatermarkStrength`].

    Args:
        weight (`float`, *optional*, defaults to 0.5): λ at the start (`ingrain_lambda`).
        target_log10_p (`float`, *optional*, defaults to -8): the predicted 1,000-query p-value aimed at, as a power
            of ten: two below the default alpha of 1e-6, as `WatermarkTakesCallback` asks.
        band (`float`, *optional*, defaults to 4): λ falls only when the prediction is this many powers of ten below
            the target.
        up (`float`, *optional*, defaults to 1.5), down (`float`, *optional*, defaults to 0.8): the factors.
        minimum (`float`, *optional*, defaults to 0.05), maximum (`float`, *optional*, defaults to 4): λ's bounds.
    """

    def __init__(self, weight: float = 0.5, target_log10_p: float = -8.0, band: float = 4.0, up: float = 1.5,
                 down: float = 0.8, minimum: float = 0.05, maximum: float = 4.0):
        if not 0 < minimum <= weight <= maximum:
            raise ValueError(
                f"The starting ingrain weight {weight} must lie in [{minimum}, {maximum}] for the controlled mode; set "
                "`ingrain_lambda` inside it."
            )
        if not (up > 1 and 0 < down < 1 and band >= 0):
            raise ValueError(f"Need up > 1, 0 < down < 1 and band >= 0, got up={up}, down={down}, band={band}.")
        self.initial_weight, self.target_log10_p, self.band = float(weight), float(target_log10_p), float(band)
        self.up, self.down, self.minimum, self.maximum = float(up), float(down), float(minimum), float(maximum)
        self.weight, self.updates = float(weight), 0

    def update(self, log10_p_value: float) -> float:
        """Moves λ after a measurement whose predicted p-value is `10**log10_p_value`; returns the new λ."""
        if log10_p_value > self.target_log10_p:
            factor = self.up
        elif log10_p_value < self.target_log10_p - self.band:
            factor = self.down
        else:
            factor = 1.0
        self.weight = min(max(self.weight * factor, self.minimum), self.maximum)
        self.updates += 1
        return self.weight

    def state(self) -> dict:
        return {
            "args": {"weight": self.initial_weight, "target_log10_p": self.target_log10_p, "band": self.band,
                     "up": self.up, "down": self.down, "minimum": self.minimum, "maximum": self.maximum},
            "attributes": {"weight": self.weight, "updates": self.updates},
        }

    def on_train_begin(self, args, state, control, **kwargs):
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        if saved and state.global_step > 0:  # resuming: the weight the checkpoint was saved with
            self.weight = float(saved["attributes"]["weight"])
            self.updates = int(saved["attributes"]["updates"])
