"""A strength that tunes itself: the ingrain weight controlled during training (`ingrain_lambda_mode="auto"`).

At every measurement of the watermark's strength (`hf_ingrain.trainer.strength`), [`IngrainWeightController`] reads
the p-value predicted for a 1,000-query verification and moves the weight λ by these rules, in this order:

1. **Warm-up.** During the first `warmup` share of training λ holds (and at the last step, which no step follows):
   early in any training the watermark is weak because the model has not learned yet, not because λ is too small
   (the first rule, which raised λ on every weak measurement, raised it from 0.5 to 2.5 in the first 0.6 epoch of a
   ResNet's training and cost 38 points of accuracy; `docs/strength/README.md`).
   **Not started.** Until `start_by` of training λ also holds while the watermark has not started, its agreement
   not above the null rate: some models take it late. A transformers ConvNeXt (6,000 digits, fixed λ = 0.5) is still
   below the null rate at a third of training and verifies at the end (p = 5e-8); the rule without this held its flat
   predictions at p = 1 for a watermark that would never take, raised λ at 0.30 of training and cost 9 to 16 points
   where the fixed λ cost 3.5 to 4.6 (`docs/strength/README.md`). A watermark still not started by then is raised.
   Once it has started, its trend is read from the measurements since then alone, and λ holds until there are
   `window` of them: the flat predictions before the start would carry any first prediction past alpha (they raised
   the same ConvNeXt at the first measurement with a positive margin, 0.40 to 0.55 of training, where its next
   prediction had fallen by three to five powers of ten), and a line through two noisy points is no trend (it raised
   a ViT whose second prediction after the start wobbled from 1e-1 back to 1).
2. **Far stronger than needed.** When the prediction is more than `band` powers of ten below the target, λ falls by
   `down`: the model pays accuracy for more watermark than it needs.
3. **On course.** λ rises by `up` only when the watermark misses the target by more than `slack` powers of ten now
   and is *projected* to miss it by as much at the end of training (by default: predicted not to verify at alpha =
   1e-6 now, and projected not to at the end): the trend of the last `window` predictions (a least-squares line of
   log10 p against the share of training done) carried from the current prediction to the end. A watermark that is
   weak but improving fast enough is left alone, and so is one projected between alpha and the target: the
   prediction from a few hundred examples moves by a power of ten from one measurement to the next, and a rule that
   raised λ whenever the projection missed the target itself raised a transformers ResNet's λ from 0.5 to 1.125 on
   such noise and cost it 12 points of accuracy, where the fixed λ's model verified at p = 6e-11 (6,000 digits, the
   150-step key of 0.2.0; `docs/strength/README.md`).
   A watermark that meets alpha now is not raised on a trend: four noisy predictions drifting from 1e-9.3 to 1e-8.3
   project past alpha, and raised another seed's λ with the slack alone; drifts from 1e-8.3 to 1e-6.6 raised a
   ConvNeXt's and a ResNet's λ at 0.60 of training, where the fixed λ verified (0.5 points for the ResNet).
   After a raise λ holds for `settle` measurements: the model needs steps to answer a new weight. No raise comes
   after `last_raise` of training: a late raise leaves the model too few steps to take the watermark and only costs
   accuracy (the rule without this limit raised λ at 99% of a `fashion_mnist` ResNet's training, from 1.7 to 2.5;
   `docs/strength/README.md`). From there on a watermark that is projected to miss the target is left to the
   end-of-training warning.
4. **Not responding.** When `patience` raises in a row have not improved the prediction by a power of ten, the
   watermark does not respond to λ in this model (a model too small for its task, say): λ goes back to its value
   before those raises and is never raised again. The end-of-training warning then says the watermark did not take.

λ stays within `[minimum, maximum]`. The factors are asymmetric because a watermark that does not take is the
failure that matters; the dead band between the rules keeps λ still against the noise of a prediction from a few
hundred examples.

The controller's state (λ, its history of predictions, whether it gave up raising) is saved in every checkpoint's
`trainer_state.json` (`stateful_callbacks`) and restored when training resumes, whatever
`restore_callback_states_from_checkpoint` says, so a resumed run trains exactly as one that went straight through.
Under several processes every process measures the same examples and the main process's weight is broadcast to the
others.
"""

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


class IngrainWeightController(TrainerCallback, ExportableState):
    r"""
    The ingrain weight of `ingrain_lambda_mode="auto"` (see the module docstring). [`IngrainTrainer`] makes one from
    its arguments; its [`update`] is called with each [`~hf_ingrain.trainer.strength.WatermarkStrength`]'s
    prediction and the share of training done.

    Args:
        weight (`float`, *optional*, defaults to 0.5): λ at the start (`ingrain_lambda`).
        target_log10_p (`float`, *optional*, defaults to -8): the predicted 1,000-query p-value aimed at, as a power
            of ten: two below the default alpha of 1e-6, as `WatermarkTakesCallback` asks.
        band (`float`, *optional*, defaults to 4): λ falls only when the prediction is this many powers of ten below
            the target.
        slack (`float`, *optional*, defaults to 2): λ rises only when the projection misses the target by more than
            this many powers of ten (with the default target: when it misses alpha = 1e-6).
        up (`float`, *optional*, defaults to 1.5), down (`float`, *optional*, defaults to 0.8): the factors.
        minimum (`float`, *optional*, defaults to 0.05), maximum (`float`, *optional*, defaults to 4): λ's bounds.
        warmup (`float`, *optional*, defaults to 0.25): the share of training during which λ holds.
        window (`int`, *optional*, defaults to 4): the predictions the trend is fitted to (at least 2).
        patience (`int`, *optional*, defaults to 3): raises in a row after which a watermark that has not improved by
            a power of ten is taken as not responding.
        settle (`int`, *optional*, defaults to 2): measurements after a raise during which λ holds.
        last_raise (`float`, *optional*, defaults to 0.75): the share of training after which λ is never raised.
        start_by (`float`, *optional*, defaults to 0.5): the share of training until which λ holds while the
            watermark has not started (the `margin` given to [`update`] not above 0).
    """

    def __init__(self, weight: float = 0.5, target_log10_p: float = -8.0, band: float = 4.0, up: float = 1.5,
                 down: float = 0.8, minimum: float = 0.05, maximum: float = 4.0, warmup: float = 0.25,
                 window: int = 4, patience: int = 3, settle: int = 2, last_raise: float = 0.75, slack: float = 2.0,
                 start_by: float = 0.5):
        if not 0 < minimum <= weight <= maximum:
            raise ValueError(
                f"The starting ingrain weight {weight} must lie in [{minimum}, {maximum}] for the controlled mode; set "
                "`ingrain_lambda` inside it."
            )
        if not (up > 1 and 0 < down < 1 and band >= 0 and slack >= 0):
            raise ValueError(f"Need up > 1, 0 < down < 1, band >= 0 and slack >= 0, got up={up}, down={down}, "
                             f"band={band}, slack={slack}.")
        if not 0 <= start_by <= 1:
            raise ValueError(f"Need 0 <= start_by <= 1 (a share of training), got start_by={start_by}.")
        if not (0 <= warmup < last_raise <= 1 and window >= 2 and patience >= 1 and settle >= 0):
            raise ValueError(f"Need 0 <= warmup < last_raise <= 1, window >= 2, patience >= 1 and settle >= 0, got "
                             f"warmup={warmup}, last_raise={last_raise}, window={window}, patience={patience}, "
                             f"settle={settle}.")
        self.initial_weight, self.target_log10_p, self.band = float(weight), float(target_log10_p), float(band)
        self.up, self.down, self.minimum, self.maximum = float(up), float(down), float(minimum), float(maximum)
        self.warmup, self.window, self.patience, self.settle = float(warmup), int(window), int(patience), int(settle)
        self.last_raise, self.slack, self.start_by = float(last_raise), float(slack), float(start_by)
        self.weight, self.updates = float(weight), 0
        self.history: list[list[float]] = []  # [share of training done, predicted log10 p] at every measurement
        self.raises: list[list[float]] = []  # the current run of raises: [λ before it, log10 p when it was made]
        self.unresponsive = False
        self.since_raise = -1  # measurements since the last raise (-1: none yet)
        self.started_at: float | None = None  # the share of training at which the margin was first above 0

    def _since_start(self) -> list[list[float]]:
        """The predictions since the watermark started (all of them when no margin said when)."""
        return [point for point in self.history if self.started_at is None or point[0] >= self.started_at]

    def projected_log10_p(self) -> float:
        """The prediction carried to the end of training along the trend of the last `window` predictions since the
        watermark started."""
        progress, current = self.history[-1]
        points = self._since_start()[-self.window:]
        if len(points) < 2:
            return current
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        spread = sum((x - mean_x) ** 2 for x, _ in points)
        if spread == 0:
            return current
        slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
        return current + slope * max(0.0, 1.0 - progress)

    def update(self, log10_p_value: float, progress: float = 1.0, margin: float | None = None) -> float:
        """Moves λ after a measurement whose predicted p-value is `10**log10_p_value`, made when `progress` (0 to 1)
        of training is done, its agreement `margin` above the null rate (when given); returns the new λ."""
        self.history.append([float(progress), float(log10_p_value)])
        if margin is not None and margin > 0 and self.started_at is None:
            self.started_at = float(progress)
        self.updates += 1
        if self.since_raise >= 0:
            self.since_raise += 1
        if progress < self.warmup or progress >= 1:  # the last measurement only reports: no step is left to weigh
            return self.weight
        if log10_p_value < self.target_log10_p - self.band:
            self.raises = []
            self.weight = max(self.weight * self.down, self.minimum)
        elif (not self.unresponsive and log10_p_value > self.target_log10_p + self.slack
              and self.projected_log10_p() > self.target_log10_p + self.slack):
            if margin is not None and margin <= 0 and progress < self.start_by and self.started_at is None:
                return self.weight  # not started yet: some models take the watermark late
            if self.started_at is not None and len(self._since_start()) < self.window:
                return self.weight  # just started: no trend yet
            if 0 <= self.since_raise <= self.settle:
                return self.weight  # the last raise has not had its steps yet
            if len(self.raises) >= self.patience and log10_p_value > self.raises[0][1] - 1:
                self.weight, self.unresponsive, self.raises = self.raises[0][0], True, []  # raising did not help
            elif self.weight < self.maximum and progress < self.last_raise:
                self.raises.append([self.weight, float(log10_p_value)])
                self.weight = min(self.weight * self.up, self.maximum)
                self.since_raise = 0
        else:
            self.raises = []
        return self.weight

    def state(self) -> dict:
        return {
            "args": {"weight": self.initial_weight, "target_log10_p": self.target_log10_p, "band": self.band,
                     "up": self.up, "down": self.down, "minimum": self.minimum, "maximum": self.maximum,
                     "warmup": self.warmup, "window": self.window, "patience": self.patience, "settle": self.settle,
                     "last_raise": self.last_raise, "slack": self.slack, "start_by": self.start_by},
            "attributes": {"weight": self.weight, "updates": self.updates, "history": self.history,
                           "raises": self.raises, "unresponsive": self.unresponsive, "since_raise": self.since_raise,
                           "started_at": self.started_at},
        }

    def on_train_begin(self, args, state, control, **kwargs):
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        if saved and state.global_step > 0:  # resuming: the state the checkpoint was saved with
            attributes = saved["attributes"]
            self.weight = float(attributes["weight"])
            self.updates = int(attributes["updates"])
            self.history = [list(point) for point in attributes.get("history", [])]
            self.raises = [list(entry) for entry in attributes.get("raises", [])]
            self.unresponsive = bool(attributes.get("unresponsive", False))
            self.since_raise = int(attributes.get("since_raise", -1))
            started_at = attributes.get("started_at")
            self.started_at = None if started_at is None else float(started_at)
