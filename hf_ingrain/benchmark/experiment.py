"""[`_Experiment`]: the data, keys, models and attacks shared by every cell of one benchmark run."""

import copy
import logging
import math
import os

import torch
from transformers import Trainer, TrainingArguments

from ..attacks import (
    ExtractionAttack, FinePruneAttack, FineTuneAttack, InputTransformAttack, OverwriteAttack, PruneAttack,
    QuantizeAttack, WeightNoiseAttack, build_student,
)
from ..data import load_image_dataset
from ..keys import WatermarkKey
from ..models import SmallCNNConfig, build_classifier
from ..suspects import collect_scores, load_or_train
from ..trainer import DistillationConfig, DistillationTrainer, IngrainConfig, IngrainTrainer, UchidaConfig, UchidaTrainer
from ..verification import verify
from ..watermarks import AdiKey, UchidaKey, ZhangKey, embed_trigger_set
from .config import ATTACK_PATTERNS, EXTRACTION_OUTPUTS, ExperimentConfig

logger = logging.getLogger(__name__)


class _Experiment:
    """The data, keys and training recipes shared by every cell of one run."""

    def __init__(self, config: ExperimentConfig, output_dir: str):
        self.config, self.output_dir = config, output_dir
        self.splits = load_image_dataset(config.dataset, seed=config.seed, max_examples=config.max_examples)
        self.num_labels = len(self.splits["owner"].features["labels"].names)
        self.input_shape = tuple(self.splits["owner"][0]["pixel_values"].shape)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._keys, self._thief_key = {}, None

    # -- models -----------------------------------------------------------------------------------------------
    def new_model(self, seed: int, small: bool = False):
        torch.manual_seed(seed)
        divisor = 2 if small else 1
        return build_classifier(
            "small_cnn", num_labels=self.num_labels, input_shape=self.input_shape,
            hidden_sizes=[c // divisor for c in self.config.hidden_channels],
            hidden_size=self.config.hidden_size // divisor,
        )

    def args(self, scratch: str, seed: int, epochs: int, **extra) -> dict:
        return dict(
            output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=self.config.batch_size,
            learning_rate=self.config.learning_rate, report_to="none", save_strategy="no", logging_strategy="no",
            disable_tqdm=True, seed=seed, use_cpu=self.device == "cpu", **extra,
        )

    # -- keys (re-derived from the seed, never written) ----------------------------------------------------------
    def ingrainer_architecture(self) -> SmallCNNConfig:
        channels, side, _ = self.input_shape
        return SmallCNNConfig(
            num_channels=channels, image_size=side, hidden_channels=self.config.ingrainer_hidden_channels,
            hidden_size=self.config.ingrainer_hidden_size, num_labels=self.num_labels,
        )

    def key(self, scheme: str):
        if scheme not in self._keys:
            seed = self.config.seed
            if scheme.startswith("ingrain") or scheme == "reference":
                key = WatermarkKey.generate(self.num_labels, self.input_shape, self.config.num_carriers, seed=seed)
                key.train_ingrainer(
                    benign_dataset=self.splits["owner"], architecture=self.ingrainer_architecture(),
                    num_steps=self.config.ingrainer_steps, batch_size=self.config.ingrainer_batch_size,
                    num_reference_keys=self.config.num_reference_keys, num_proc=self.config.num_proc,
                )
            elif scheme.startswith("zhang_"):
                key = ZhangKey.generate(self.splits["owner"], kind=scheme.split("_", 1)[1], seed=seed)
            elif scheme == "adi":
                key = AdiKey.generate(self.num_labels, self.input_shape, seed=seed)
            elif scheme == "uchida":
                key = UchidaKey.generate(self.new_model(seed + 1), seed=seed)
            # every ingrain model shares the one ingrain key
            shared = scheme.startswith("ingrain") or scheme == "reference"
            self._keys.update({s: key for s in (["reference"] + self._ingrain_names() if shared else [scheme])})
        return self._keys[scheme]

    def _ingrain_names(self):
        return [f"ingrain_lambda_{value:g}" for value in self.config.ingrain_lambdas]

    def schemes(self) -> list[str]:
        return ["reference"] + list(self.config.schemes) + self._ingrain_names()

    # -- training a watermarked model ------------------------------------------------------------------------------
    def train(self, scheme: str, scratch: str):
        owner, seed = self.splits["owner"], self.config.seed + 1
        model, key = self.new_model(seed), self.key(scheme)
        args = self.args(scratch, seed, self.config.epochs)
        if scheme == "reference":  # no watermark; tested with the ingrain key: a false-positive check
            Trainer(model=model, args=TrainingArguments(**args), train_dataset=owner).train()
        elif scheme.startswith("ingrain"):
            ingrain_lambda = float(scheme.rsplit("_", 1)[1])
            config = IngrainConfig(**args, ingrain_lambda=ingrain_lambda, ingrain_temperature=self.config.ingrain_temperature)
            IngrainTrainer(model=model, args=config, train_dataset=owner, ingrainer=key).train()
        elif scheme == "uchida":
            UchidaTrainer(model=model, args=UchidaConfig(**args), key=key, train_dataset=owner).train()
        else:
            embed_trigger_set(model, key, owner, TrainingArguments(**args))
        return model.eval()

    def verify(self, scheme: str, model):
        """The scheme's own test (the ingrain test for the reference); `None` where a white-box test cannot apply."""
        key = self.key(scheme)
        if key is None:
            return None
        if scheme.startswith("ingrain") or scheme == "reference":
            return verify(model, key, self.splits["test"], alpha=self.config.verify_alpha)
        try:
            return key.verify(model, alpha=self.config.verify_alpha)
        except ValueError as error:  # e.g. Uchida's layer does not exist in a student of another architecture
            logger.info("%s: verification not applicable (%s)", scheme, error)
            return None

    # -- attacks -------------------------------------------------------------------------------------------------
    def attack(self, name: str, teacher, scratch: str):
        seed, attacker, config = self.config.seed + 7, self.splits["attacker"], self.config
        if "+" in name:  # a chain: each attack on the previous one's result
            for step in name.split("+"):
                teacher = self.attack(step, teacher, scratch)
            return teacher
        training = dict(batch_size=config.batch_size, learning_rate=config.learning_rate, seed=seed)
        extraction = ATTACK_PATTERNS[0].fullmatch(name)
        if extraction:  # as many steps as distill_T4: only the queries differ
            source, thousands, output = extraction.groups()
            return ExtractionAttack(
                teacher, queries=source, num_queries=int(thousands) * 1000, temperature=4.0,
                teacher_output=EXTRACTION_OUTPUTS[output or "logits"], student=self.new_model(seed), images=attacker,
                max_steps=config.attack_epochs * math.ceil(len(attacker) / config.batch_size), **training,
            ).run()
        ensemble = ATTACK_PATTERNS[2].fullmatch(name)
        if ensemble:  # distill_T4 from the average of the teacher and the thief's own models
            others = [self.thief_model(index, scratch) for index in range(int(ensemble.group(1)) - 1)]
            return ExtractionAttack(
                teacher, queries="data", num_queries=len(attacker), images=attacker, ensemble_with=others,
                temperature=4.0, student=self.new_model(seed), num_train_epochs=config.attack_epochs, **training,
            ).run()
        if name == "overwrite":  # the thief's key is drawn once per run, like the owner's
            attack = OverwriteAttack(
                teacher, key=self._thief_key, key_seed=config.seed + 1000, num_carriers=config.num_carriers,
                ingrainer_steps=config.ingrainer_steps, num_reference_keys=config.num_reference_keys,
                ingrain_temperature=config.ingrain_temperature, num_train_epochs=config.finetune_epochs, **training,
            )
            attacked = attack.run(attacker)
            self._thief_key = attack.key
            return attacked
        if name.startswith("distill") or name == "hard_label":
            architecture = ATTACK_PATTERNS[1].fullmatch(name)
            if architecture:
                student = build_student(teacher, architecture.group(2), self.input_shape, seed=seed)
            else:
                student = self.new_model(seed, small=name.endswith("small"))
            extra = (
                dict(teacher_output="label")
                if name == "hard_label"
                else dict(temperature=float(name.split("_")[1][1:]), teacher_output="logits")
            )
            args = DistillationConfig(
                **self.args(scratch, seed, self.config.attack_epochs), teacher_weight=1.0, **extra
            )
            # the trainer freezes its teacher: give it a copy, the model goes on to the next attacks
            DistillationTrainer(model=student, teacher=copy.deepcopy(teacher), args=args, train_dataset=attacker).train()
            return student.eval()
        if name == "finetune_FTAL":
            return FineTuneAttack(
                teacher, mode="FTAL", num_train_epochs=self.config.finetune_epochs, seed=seed,
            ).run(attacker)
        if name == "finetune_ls_0.1":  # retraining with label smoothing: FTAL on smoothed targets
            return FineTuneAttack(
                teacher, mode="FTAL", num_train_epochs=self.config.finetune_epochs, seed=seed,
                training_args={"label_smoothing_factor": 0.1},
            ).run(attacker)
        if name == "fineprune_50":
            return FinePruneAttack(
                teacher, rate=0.5, num_train_epochs=self.config.finetune_epochs, seed=seed,
            ).run(attacker)
        if name == "prune_50":
            return PruneAttack(teacher, rate=0.5).run()
        if name == "quantize_4bit":
            return QuantizeAttack(teacher, bits=4, method="uniform").run()
        if name.startswith(("jpeg_", "blur_", "input_noise_")):  # the data sets here are in [0, 1]
            transform, strength = name.rsplit("_", 1)
            transform = {"input_noise": "noise"}.get(transform, transform)
            return InputTransformAttack(teacher, transform=transform, strength=float(strength), seed=seed).run()
        if name.startswith("noise_"):
            return WeightNoiseAttack(teacher, scale=float(name.split("_")[1]), seed=seed).run()
        raise ValueError(f"Unknown attack {name!r}.")

    def thief_model(self, index: int, scratch: str):
        """The thief's own model number `index` (trained plainly on the attacker's split), for ensembles."""
        def train():
            model = self.new_model(self.config.seed + 20 + index)
            args = TrainingArguments(**self.args(scratch, self.config.seed + 20 + index, self.config.epochs))
            Trainer(model=model, args=args, train_dataset=self.splits["attacker"]).train()
            return model.eval()

        return _trained_model(self, f"_thief_{index}", scratch, train)

    def thief_claims(self, original, attacked) -> dict:
        """The thief's key on the overwritten model and on the owner's original: the two sides of a dispute."""
        claims = {}
        for name, model in (("thief", attacked), ("thief_on_original", original)):
            result = verify(model, self._thief_key, self.splits["test"], alpha=self.config.verify_alpha)
            claims.update({f"{name}_verified": bool(result.verified), f"{name}_p_value": result.p_value})
        claims["thief_key_commitment"] = self._thief_key.commitment()
        return claims

    def accuracy(self, model) -> float:
        scores, labels = collect_scores(model, self.splits["test"])
        return (scores.argmax(-1) == labels).float().mean().item()


def _verdict(result) -> dict:
    """The fields of a verification every table reads (`None` each where the test could not apply)."""
    return {
        "verified": None if result is None else bool(result.verified),
        "p_value": None if result is None else result.p_value,
        "score": None if result is None else result.agreement,
    }


def _cell(experiment: _Experiment, scheme: str, attack: str, model) -> dict:
    result = experiment.verify(scheme, model)
    return {
        "scheme": scheme,
        "attack": attack,
        "test_accuracy": experiment.accuracy(model),
        **_verdict(result),
        "null_rate": None if result is None else result.null_rate,
        "protocol": None if result is None else result.protocol,
    }


def _trained_model(experiment: _Experiment, scheme: str, scratch: str, train=None):
    """Trains the scheme's model (or calls `train()`), or loads it from `models/<scheme>` when an earlier run saved
    it."""
    folder = os.path.join(experiment.output_dir, "models", scheme)
    return load_or_train(folder, train if train is not None else lambda: experiment.train(scheme, scratch))


