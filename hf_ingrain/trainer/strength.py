"""How strongly a model carries its key's watermark while it trains, measured with the key's own test.

[`IngrainTrainer`] measures it on held-out examples (the `strength_dataset` it is given, else its `eval_dataset`, else
the first training examples, which overstate it) at the end of every epoch (or every `ingrain_strength_steps` steps)
and at the last step; it logs the numbers through the Trainer's logging (`ingrain/agreement`, `ingrain/margin`,
`ingrain/log10_p_value`, ...), records the last one in the model card, and warns at the end of training when the model
would not verify.
[`WatermarkTakesCallback`] keeps training until the watermark takes, within the epochs the arguments allow.

The measurement is [`~hf_ingrain.verify`] itself on at most `ingrain_strength_examples` examples, plus a prediction:
the p-value the same test would give at a verification's budget of queries (1,000 by default) if the model agreed with
the key, and with the key's references, at the rates measured (see [`predicted_p_value`]).
"""

import itertools
import logging
import math
from dataclasses import asdict, dataclass, replace

import torch
from scipy.stats import t as student_t
from transformers import TrainerCallback

from ..hub.model_card import STRENGTH_SOURCES
from ..verification.protocols import DEFAULT_ALPHA, verify
from ..verification.statistics import binomial_p_value

logger = logging.getLogger(__name__)

# The number of queries the prediction is for: what the README, the guides and `hf-ingrain verify` send by default.
VERIFICATION_BUDGET = 1000


@dataclass
class WatermarkStrength:
    r"""
    The watermark's strength in a model at one point of training (see the module docstring).

    Args:
        agreement (`float`): the share of queries where the model's runner-up is the key's choice.
        null_rate (`float`): the agreement bound of models not derived from the key, on these queries.
        reference_agreement (`float` or `None`): the model's mean agreement with the key's reference ingrainers.
        reference_sd (`float` or `None`): their spread, as the key-draw test counts it on these queries.
        num_references (`int`): the key's reference ingrainers.
        num_queries (`int`): the distinct examples measured.
        p_value (`float`): the key's test on these examples.
        predicted_p_value (`float`): the same test's p-value at `budget` queries (see [`predicted_p_value`]).
        budget (`int`): the queries of the verification predicted.
        alpha (`float`): the significance level the verdict is read against.
        source (`str`): where the examples came from: `"strength_dataset"`, `"eval_dataset"` or `"train_dataset"`
            (training examples: the model was fitted on them, so they overstate the strength).
        step (`int`, *optional*): the optimizer step it was measured at.
        scores_p_value (`float`, *optional*): the scores protocol's p-value on the same examples
            (`protocol="ingrain_scores"`), measured at the end of training when the runner-up test is not predicted
            to pass (the scores protocol sees a watermark that has shifted scores but not yet runner-ups).
    """

    agreement: float
    null_rate: float
    reference_agreement: float | None
    reference_sd: float | None
    num_references: int
    num_queries: int
    p_value: float
    predicted_p_value: float
    budget: int
    alpha: float
    source: str
    step: int | None = None
    scores_p_value: float | None = None

    @property
    def margin(self) -> float:
        """How far the agreement stands above what a model not derived from the key reaches: the larger of the null
        rate and the references' mean agreement."""
        floor = self.null_rate if self.reference_agreement is None else max(self.null_rate, self.reference_agreement)
        return self.agreement - floor

    @property
    def takes(self) -> bool:
        """Whether a verification of `budget` queries is predicted to verify at `alpha`."""
        return self.predicted_p_value <= self.alpha

    def to_logs(self) -> dict:
        """The numbers logged through the Trainer (`log10_p_value` is the prediction at the budget, floored at -300)."""
        logs = {
            "ingrain/agreement": self.agreement,
            "ingrain/null_rate": self.null_rate,
            "ingrain/margin": self.margin,
            "ingrain/log10_p_value": _log10(self.predicted_p_value),
        }
        if self.reference_agreement is not None:
            logs["ingrain/reference_agreement"] = self.reference_agreement
        return logs

    def to_dict(self) -> dict:
        """Every field, plus `margin` and `takes`: what the model card's `training_strength` entry records."""
        return {**asdict(self), "margin": self.margin, "takes": self.takes}

    def summary(self) -> str:
        references = "" if self.reference_agreement is None else f", references {self.reference_agreement:.3f}"
        examples = f"{self.num_queries} {STRENGTH_SOURCES.get(self.source, self.source)} examples"
        return (
            f"agreement {self.agreement:.3f} on {examples} (null rate {self.null_rate:.3f}{references}), predicted "
            f"p = {self.predicted_p_value:.2g} at {self.budget} queries (alpha = {self.alpha:g})"
        )

    def advice(self) -> str:
        """The end-of-training warning for a watermark that does not take: what was measured, and what to do."""
        overstated = (
            " These are training examples, which overstate the strength: pass held-out examples as `eval_dataset` or "
            "`strength_dataset`." if self.source == "train_dataset" else ""
        )
        scores = ""
        if self.scores_p_value is not None and self.scores_p_value <= self.alpha:
            scores = (
                f" The scores protocol finds it on the same {self.num_queries} examples "
                f"(p = {self.scores_p_value:.2g}): if suspects will expose every class's score, verify and commit "
                "with `protocol='ingrain_scores'`."
            )
        elif self.scores_p_value is not None:
            scores = f" Nor does the scores protocol on the same examples (p = {self.scores_p_value:.2g})."
        return (
            f"The watermark has not taken: {self.summary()}, so the runner-up test would not verify this model."
            f"{scores}{overstated} The watermark often needs more training than the task: train longer "
            "(`num_train_epochs`; `WatermarkTakesCallback` stops as soon as it takes), raise `ingrain_lambda`, or, if "
            "the ingrain loss still falls, keep `ingrain_target_scale` at 1. Check with `hf_ingrain.verify` before "
            "publishing."
        )


def _log10(p_value: float) -> float:
    return math.log10(max(p_value, 1e-300))


def predicted_p_value(
    agreement: float, null_rate: float, reference: dict | None, num_queries: int, budget: int
) -> float:
    r"""
    The p-value of the key's test at `budget` queries, for a model that agrees with the key and with its references
    at the rates measured on `num_queries` queries: the larger of the binomial test (the agreement against the null
    rate) and the key-draw test. In the key-draw test the references' spread measured on `num_queries` queries holds
    their sampling noise at that number, `m (1 - m) / num_queries`; the prediction keeps the rest (the spread between
    keys) and adds the noise at `budget` queries. It is a point prediction: the measured rates carry the noise of
    `num_queries` queries.

    Args:
        agreement (`float`), null_rate (`float`): as measured.
        reference (`dict` or `None`): the key-draw test's numbers (`num_references`, `mean`, `sd`), or `None`.
        num_queries (`int`): the queries measured.
        budget (`int`): the queries of the verification predicted.
    """
    p_value = binomial_p_value(round(agreement * budget), budget, null_rate)
    if reference and reference.get("num_references", 0) >= 2 and "mean" in reference:
        count, mean = reference["num_references"], reference["mean"]
        noise = max(mean * (1 - mean), 1e-12)
        between_keys = max(reference["sd"] ** 2 - noise / max(num_queries, 1), 0.0)
        spread = math.sqrt(between_keys + noise / budget)
        statistic = (agreement - mean) / (spread * math.sqrt(1 + 1 / count))
        p_value = max(p_value, float(student_t.sf(statistic, count - 1)))
    return p_value


def measure_strength(model, key, examples, *, source: str, alpha: float = DEFAULT_ALPHA,
                     budget: int = VERIFICATION_BUDGET, batch_size: int = 256, step: int | None = None,
                     scores: bool = False):
    r"""
    [`WatermarkStrength`] of `model` on `examples` (model inputs, e.g. a list of padded dicts): [`~hf_ingrain.verify`]
    with the key's own test, and the p-value predicted at `budget` queries; with `scores`, when that test is not
    predicted to pass, also the scores protocol's p-value on the same examples (a key with 2 references or more). The
    model's train/eval mode is kept.
    """
    result = verify(model, key, examples, alpha=alpha, batch_size=batch_size)
    reference = result.details.get("key_draw") or {}
    has_references = "mean" in reference
    strength = WatermarkStrength(
        agreement=float(result.agreement), null_rate=float(result.null_rate),
        reference_agreement=float(reference["mean"]) if has_references else None,
        reference_sd=float(reference["sd"]) if has_references else None,
        num_references=int(reference.get("num_references", 0)), num_queries=int(result.num_queries),
        p_value=float(result.p_value),
        predicted_p_value=predicted_p_value(result.agreement, result.null_rate, reference, result.num_queries, budget),
        budget=budget, alpha=alpha, source=source, step=step,
    )
    if scores and not strength.takes and len(key.reference_ingrainers) >= 2:
        by_scores = verify(model, key, examples, alpha=alpha, batch_size=batch_size, protocol="ingrain_scores")
        strength = replace(strength, scores_p_value=float(by_scores.p_value))
    return strength


def padded_examples(dataset, collator, limit: int, drop=()) -> list[dict]:
    r"""
    The first `limit` examples of `dataset` (map-style or streaming) as a list of model-input dicts of equal shapes:
    collated by the Trainer's `collator` in one call, so texts are padded to one length. Columns in `drop` are left out.
    """
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        rows = [dataset[index] for index in range(min(limit, len(dataset)))]
    else:
        rows = list(itertools.islice(iter(dataset), limit))
    if not rows:
        return []
    batch = collator([{k: v for k, v in row.items() if k not in drop} for row in rows])
    tensors = {
        name: value for name, value in batch.items() if torch.is_tensor(value) and value.shape[:1] == (len(rows),)
    }
    return [{name: value[index] for name, value in tensors.items()} for index in range(len(rows))]


class StrengthMonitor(TrainerCallback):
    """IngrainTrainer's own callback: measures the watermark's strength every `ingrain_strength_steps` steps (0: at
    the end of every epoch) and at the last step, logged with that step's log, and warns at the end of training when
    it has not taken."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.every = trainer.args.ingrain_strength_steps  # 0: at the end of every epoch
        self._skipped = False

    def _measurable(self) -> bool:
        trainer = self.trainer
        if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:  # sharded weights: measure after saving
            if not self._skipped and trainer.is_world_process_zero():
                logger.info("The watermark's strength is not measured during sharded training: run `verify` on the "
                            "saved model.")
            self._skipped = True
            return False
        key = trainer._watermark_key
        if key is not None and key.num_labels == 2:  # the runner-up test reads nothing there (`ingrain_scores` does)
            if not self._skipped and trainer.is_world_process_zero():
                logger.info("A two-class key: the watermark's strength is not measured during training (its runner-up "
                            "is always the other class); run `verify(..., protocol='ingrain_scores')` after training.")
            self._skipped = True
            return False
        return key is not None and trainer.args.ingrain_strength_examples > 0

    def _measure(self, scores: bool = False):
        """The strength now, or `None` with a warning when it cannot be measured: a training run is not lost to it."""
        try:
            return self.trainer.measure_watermark_strength(scores=scores)
        except Exception as error:  # noqa: BLE001 -- any failure of the measurement is reported, training goes on
            if self.trainer.is_world_process_zero():
                logger.warning("The watermark's strength could not be measured (%s: %s); check the model with "
                               "`hf_ingrain.verify` after training.", type(error).__name__, error)
            return None

    def on_train_begin(self, args, state, control, **kwargs):
        self.every = args.ingrain_strength_steps
        if not self.every and self.trainer.weight_controller is not None:  # the controlled mode measures 20 times
            self.every = max(1, state.max_steps // 20)

    def on_step_end(self, args, state, control, **kwargs):
        if (self.every and state.global_step % self.every == 0) or state.global_step >= state.max_steps:
            self._measure_and_log(args, state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        if not self.every:
            self._measure_and_log(args, state, control)

    def _measure_and_log(self, args, state, control):
        last = self.trainer.watermark_strength
        if (last is not None and last.step == state.global_step) or not self._measurable():
            return  # measured at this step already (the last step ends an epoch too)
        # the last step's measurement is the one the end of training reports: with the scores protocol where needed
        strength = self._measure(scores=state.global_step >= state.max_steps)
        if strength is None:
            return
        self.trainer.watermark_strength = strength
        logs = strength.to_logs()
        controller = self.trainer.weight_controller
        if controller is not None:
            progress = state.global_step / state.max_steps if state.max_steps else 1.0
            logs["ingrain/lambda"] = self._update(controller, logs["ingrain/log10_p_value"], progress,
                                                  logs["ingrain/margin"])
        if getattr(self.trainer, "_globalstep_last_logged", -1) >= state.global_step:
            self.trainer.log(logs)  # this step is logged already (an epoch's end after its last step's log)
            return
        device = args.device
        for name, value in logs.items():  # the same numbers on every process: their mean is them
            self.trainer._record_metric(self.trainer.model, name, torch.tensor(value, device=device))
        control.should_log = True  # logged with this step's loss

    def _update(self, controller, log10_p_value: float, progress: float, margin: float) -> float:
        """The controller's new λ, the main process's on every process (their measurements agree on a CPU; a GPU's
        kernels may differ in the last bits, and the processes must weigh the term alike)."""
        weight = controller.update(log10_p_value, progress, margin)
        if self.trainer.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            weight = controller.weight = broadcast_object_list([weight], from_process=0)[0]
        return weight

    def on_train_end(self, args, state, control, **kwargs):
        trainer = self.trainer
        if not self._measurable():
            return
        strength = trainer.watermark_strength
        if strength is None or strength.step != state.global_step:  # stopped early by another callback
            strength = trainer.watermark_strength = self._measure(scores=True)
        if strength is None or not trainer.is_world_process_zero():
            return
        if strength.takes:
            logger.info("The watermark has taken: %s.", strength.summary())
        else:
            logger.warning(strength.advice())


class WatermarkTakesCallback(TrainerCallback):
    r"""
    Keeps training until the watermark takes, then stops: [`IngrainTrainer`] measures the strength at the end of every
    epoch (or every `ingrain_strength_steps` steps), and training stops at the first measurement, after `min_epochs`,
    whose predicted p-value is at most `alpha / 10**margin_decades`. Set `num_train_epochs` to the most you allow: the
    task's usual length goes in `min_epochs`, and the watermark gets the epochs between. A run that reaches
    `num_train_epochs` without it ends with [`IngrainTrainer`]'s warning.

    Args:
        min_epochs (`float`, *optional*, defaults to 0): train at least this long (the task's own length).
        alpha (`float`, *optional*, defaults to 1e-6): the significance level of the verification to come.
        margin_decades (`float`, *optional*, defaults to 2): how far below `alpha` the prediction must be, in powers
            of ten. The prediction carries the noise of the few hundred examples measured: at an agreement near 0.35
            on 512 of them the standard error is 0.02, which moves a 1,000-query p-value near 1e-6 by about one power
            of ten each way; two leave room for it.

    Example:

    ```python
    >>> from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkTakesCallback
    >>> args = IngrainConfig(output_dir="out", num_train_epochs=15)  # measured at every epoch's end
    >>> trainer = IngrainTrainer(model=model, args=args, train_dataset=splits["owner"], eval_dataset=splits["test"],
    ...                          ingrainer=key, callbacks=[WatermarkTakesCallback(min_epochs=4)])
    ```
    """

    def __init__(self, min_epochs: float = 0.0, alpha: float = DEFAULT_ALPHA, margin_decades: float = 2.0):
        if not 0 < alpha < 1:
            raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
        if min_epochs < 0 or margin_decades < 0:
            raise ValueError(f"`min_epochs` and `margin_decades` must be >= 0, got {min_epochs} and {margin_decades}.")
        self.min_epochs, self.alpha, self.margin_decades = min_epochs, alpha, margin_decades
        self.stopped_at = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        log10_p = (logs or {}).get("ingrain/log10_p_value")
        if log10_p is None or (state.epoch or 0) < self.min_epochs:
            return
        if log10_p <= math.log10(self.alpha) - self.margin_decades:
            self.stopped_at = state.global_step
            control.should_training_stop = True
