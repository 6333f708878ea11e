"""Training arguments of [`IngrainTrainer`]."""

import os
from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..keys import check_key_outside
from .mixins import ExtendsTrainingArguments


@dataclass
class IngrainConfig(ExtendsTrainingArguments, TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] plus the ingrain fields (Yang et al. 2019,
    https://huggingface.co/papers/1906.06046).

    The loss is `task_loss + ingrain_lambda · T² · KL(softmax(g / T) ‖ softmax(f / T))`, with `f` the model's logits
    and `g` the ingrainer's logits on the same batch (times `ingrain_target_scale`, and over the classes other than the
    label with `ingrain_exclude_label`). The owner's key never enters these arguments: pass it to
    [`IngrainTrainer`] as `ingrainer=`, or name its folder in `ingrain_key` (`--ingrain_key DIR` in a script built on
    `HfArgumentParser`), and only that path is kept here. A script that already has `TrainingArguments` builds one with
    [`~IngrainConfig.from_training_arguments`].

    Args:
        ingrain_lambda (`float`, *optional*, defaults to `0.5`):
            Weight λ of the ingrain term. Higher values make the watermark stronger in the model's predictions and cost
            accuracy. Measured by `hf-ingrain demo` (small CNNs, 15 epochs, embedded MNIST sample, key seeds 0 to 3,
            key-draw test, 2026-12-02): λ = 0.5 costs 5 to 8 points of test accuracy (0.916-0.943 → 0.863-0.884) and
            its watermark verifies in every distilled student of the same architecture (T = 1 and 4, p = 3e-7 to
            6e-10), and in a half-width student for 2 keys of 4; λ = 0.25 costs 0 to 2.4 points and fails
            distillation at T = 1 for every key; λ = 1 cost 20 points in an earlier run.
            On full MNIST (a small ResNet, 5 epochs, 3 keys) λ = 0.5 costs 0.4 to 0.7 points
            (`docs/full_mnist/README.md`). λ = 0 gives exactly the plain `Trainer` loss.
        ingrain_lambda_mode (`str`, *optional*, defaults to `"fixed"`):
            `"fixed"`: λ is `ingrain_lambda` throughout. `"auto"`: λ starts at `ingrain_lambda` and is controlled at
            every measurement of the watermark's strength (every `ingrain_strength_steps` steps; when that is 0, 20
            times over the run) towards a watermark predicted to verify at `ingrain_target_log10_p`: held during the
            first quarter of training, and until half of it while the watermark has not started (agreement not above
            the null rate), raised (before the last quarter) when the watermark is predicted to miss alpha (two
            powers of ten short of the target) and the trend of the predictions since it started, over at least
            four measurements, is projected to miss it too,
            given back when three raises gained nothing, lowered when the watermark is far stronger than needed
            (`hf_ingrain.trainer.controller`). Needs a `WatermarkKey` and held-out examples (see
            `ingrain_strength_examples`); logs `ingrain/lambda`. Opt-in: measured on a transformers ResNet (6,000
            digits, 3 seeds, `docs/strength/README.md`), from λ = 0.5 it never moved with a 600-step key (the fixed
            λ's models, bit for bit); from λ = 0.1 it reached 0.34-0.76 and every model and student verified at
            1.2-3.0 points of cost (3.4-3.8 for the fixed 0.5). On ConvNeXt from 0.1 it gave up on a watermark that was
            taking slowly: start from the default. On `fashion_mnist` (6,000 images) it makes a ResNet verify at about
            9 points, where the fixed λ misses at 2.6, and ConvNeXt not at all. With 0.2.0's 150-step key, the rule
            before its `slack` (raising whenever the projection missed the target itself) raised a ResNet's λ to
            1.125 on the noise of its predictions and cost 12 points.
        ingrain_target_log10_p (`float`, *optional*, defaults to `-8.0`):
            The target of `ingrain_lambda_mode="auto"`: the p-value a 1,000-query verification is predicted to give,
            as a power of ten (two below the default alpha of 1e-6).
        ingrain_temperature (`float`, *optional*, defaults to `4.0`):
            Temperature `T` of the ingrain term (the paper's value).
        ingrain_target_scale (`float`, *optional*, defaults to `1.0`):
            Multiplies the ingrainer's logits in the ingrain term: below 1 the targets are flatter and pull less on the
            model. Verification reads rankings only, so it is unaffected; only the strength of the pull changes.
            Measured with `docs/arch_cost/arch_cost.py` (3 seeds, `docs/arch_cost/README.md`): on full MNIST, 0.5
            keeps the cost of transformers' ResNet, ConvNeXt and ViT within 1 point (0.4, 0.7 and 0.0), every model
            and T = 4 student verifying (p <= 4e-7); on 6,000 digits it cuts the ResNet's cost from 3.6 to 0.7
            points, but a ConvNeXt at 0.5 costs nothing because its watermark no longer verifies. Check your model
            before lowering it.
        ingrain_exclude_label (`bool`, *optional*, defaults to `False`):
            Takes the ingrain term over the classes other than each example's label (both distributions
            renormalised over them), so the watermark never pulls against the task: the ingrainer's ranking of the
            wrong classes, which is what verification reads, is ingrained and the true class is left to the task
            loss. Single-label classification only. Measured on 6,000 MNIST digits
            (`docs/arch_cost/README.md`): the cost falls from 3.6 to 2.0 points for a transformers ResNet and from
            3.9 to 2.5 for a ConvNeXt, every model and T = 4 student still verifying (p <= 9e-8).
        ingrain_cache_logits (`bool`, *optional*, defaults to `False`):
            Compute the ingrainer's logits once per training example before training instead of at every step.
            Only valid when the input pipeline is deterministic (no random augmentation); a quick check refuses a
            data set whose examples change between two reads.
        ingrain_strength_steps (`int`, *optional*, defaults to `0`):
            Measure the watermark's strength every this many optimizer steps (and at the last step), with the key's own
            test on held-out examples, and log it with that step's loss (`ingrain/agreement`, `ingrain/margin`,
            `ingrain/log10_p_value`: the p-value a 1,000-query verification is predicted to give; see
            `hf_ingrain.trainer.strength`). 0: at the end of every epoch and at the last step. Training ends with a
            warning, naming what to do, when the watermark has not taken.
        ingrain_strength_examples (`int`, *optional*, defaults to `512`):
            The examples measured: the first of `IngrainTrainer`'s `strength_dataset`, else of its `eval_dataset`,
            else of the training data (which overstate the strength). 0 turns the measurement and the warning off.
        ingrain_key (`str`, *optional*):
            Folder of the owner's key (saved with [`WatermarkKey.save`]), loaded by [`IngrainTrainer`] when no
            `ingrainer` is passed. It must lie outside `output_dir` (outputs are shared or published, the key must
            stay private); the arguments keep the path only, never the key, and `to_dict()` (what logging
            integrations and model cards read) masks it as `"<INGRAIN_KEY>"`. The pickled `training_args.bin` keeps
            it, like every argument: publish with `hf_ingrain.hub.push_to_hub`, which never uploads that file.
    """

    ingrain_lambda: float = field(
        default=0.5,
        metadata={"help": "Weight λ of the ingrain loss. Larger: stronger watermark, lower accuracy. "
                          "0: plain Trainer."},
    )
    ingrain_lambda_mode: str = field(
        default="fixed",
        metadata={"help": "fixed: λ = ingrain_lambda throughout; auto: λ controlled towards a watermark that verifies "
                  "(hf_ingrain.trainer.controller).", "choices": ["fixed", "auto"]},
    )
    ingrain_target_log10_p: float = field(
        default=-8.0,
        metadata={"help": "auto mode: the predicted 1,000-query p-value aimed at, as a power of ten."},
    )
    ingrain_temperature: float = field(
        default=4.0, metadata={"help": "Temperature T of the ingrain loss (> 0)."}
    )
    ingrain_target_scale: float = field(
        default=1.0,
        metadata={"help": "Multiplies the ingrainer's logits in the loss: below 1, flatter targets, a smaller accuracy "
                  "cost and a weaker watermark (docs/arch_cost/README.md). Verification itself is unaffected."},
    )
    ingrain_exclude_label: bool = field(
        default=False,
        metadata={"help": "Leave the true class out of the ingrain term (KL over the other classes): a smaller "
                  "accuracy cost on small data sets (docs/arch_cost/README.md). Verification is unaffected."},
    )
    ingrain_cache_logits: bool = field(
        default=False,
        metadata={"help": "Precompute the ingrainer's logits per example (deterministic input pipelines only)."},
    )
    ingrain_strength_steps: int = field(
        default=0,
        metadata={"help": "Measure and log the watermark's strength every N optimizer steps (0: every epoch's end)."},
    )
    ingrain_strength_examples: int = field(
        default=512,
        metadata={"help": "Held-out examples the strength is measured on (0: no measurement, no warning)."},
    )

    ingrain_key: str | None = field(
        default=None,
        metadata={"help": "Folder of the owner's key, loaded when the trainer gets no `ingrainer`. Keep it private, "
                  "outside --output_dir."},
    )

    def to_dict(self):
        """The arguments as a dict, the key's folder masked (see `ingrain_key`), as `TrainingArguments` masks tokens."""
        values = super().to_dict()
        if values.get("ingrain_key") is not None:
            values["ingrain_key"] = "<INGRAIN_KEY>"
        return values

    def __post_init__(self):
        super().__post_init__()
        if not self.ingrain_lambda >= 0:
            raise ValueError(
                f"`ingrain_lambda` must be >= 0, got {self.ingrain_lambda}. Use 0 to train without a watermark."
            )
        if not self.ingrain_target_scale > 0:
            raise ValueError(f"`ingrain_target_scale` must be > 0, got {self.ingrain_target_scale}.")
        if not self.ingrain_temperature > 0:
            raise ValueError(
                f"`ingrain_temperature` must be > 0, got {self.ingrain_temperature}; the paper uses 4.0."
            )
        if self.ingrain_lambda_mode not in ("fixed", "auto"):
            raise ValueError(f"`ingrain_lambda_mode` must be 'fixed' or 'auto', got {self.ingrain_lambda_mode!r}.")
        if self.ingrain_lambda_mode == "auto" and not self.ingrain_strength_examples:
            raise ValueError(
                "`ingrain_lambda_mode='auto'` controls λ from measurements of the watermark, but "
                "`ingrain_strength_examples` is 0: set it (e.g. 512) or use `ingrain_lambda_mode='fixed'`."
            )
        for name in ("ingrain_strength_steps", "ingrain_strength_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}; 0 turns it off.")
        if self.ingrain_key is not None:
            self.ingrain_key = os.fspath(self.ingrain_key)
            check_key_outside(self.ingrain_key, self.output_dir, "ingrain_key", "output_dir")
