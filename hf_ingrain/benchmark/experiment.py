"""[`_Experiment`]: the data, keys, models and attacks shared by every cell of one benchmark run."""

import logging
import os

import torch
from transformers import Trainer, TrainingArguments

from ..attacks.registry import BenchmarkContext, attack_for_column
from ..data import load_image_dataset
from ..fingerprints import BoundaryFingerprint, DecisionDistanceFingerprint, VictimErrorFingerprint
from ..keys import WatermarkKey
from ..models import SmallCNNConfig, build_classifier
from ..suspects import collect_scores, load_or_train
from ..trainer import IngrainConfig, IngrainTrainer, UchidaConfig, UchidaTrainer
from ..verification import verify
from ..watermarks import AdiKey, UchidaKey, ZhangKey, embed_trigger_set
from .config import FINGERPRINT_VICTIM, FINGERPRINTS, ExperimentConfig

logger = logging.getLogger(__name__)

# The sizes of the boundary and decision-distance fingerprints (docs/fingerprints/compare.py's). The classes' defaults
# (100 queries, 50 pairs) did not verify the unattacked victim itself on the fashion_mnist grid (seed 0, 2026-12-08:
# p = 2e-6 and 2e-2, each from a perfect score): with few queries the references' spread bounds the p-value.
BOUNDARY_QUERIES, DECISION_PAIRS = 1000, 500


class _Experiment:
    """The data, keys and training recipes shared by every cell of one run."""

    def __init__(self, config: ExperimentConfig, output_dir: str):
        self.config, self.output_dir = config, output_dir
        self.splits = load_image_dataset(config.dataset, seed=config.seed, max_examples=config.max_examples)
        self.num_labels = len(self.splits["owner"].features["labels"].names)
        self.input_shape = tuple(self.splits["owner"][0]["pixel_values"].shape)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self._keys = {}
        self._fingerprints = {}
        self._attack_state = {}  # what attacks keep for the rest of the run (overwrite: the thief's key)

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
        if scheme in FINGERPRINTS:  # made from its trained model: `fingerprint`
            return None
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
        fingerprinted = scheme == FINGERPRINT_VICTIM
        if fingerprinted:  # the fingerprints' one plain victim (another seed than the reference's)
            seed += 1
        model, key = self.new_model(seed), None if fingerprinted else self.key(scheme)
        args = self.args(scratch, seed, self.config.epochs)
        if scheme == "reference" or fingerprinted:  # no watermark (the reference: a false-positive check)
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

    def fingerprint(self, scheme: str, scratch: str):
        """The scheme's fingerprint of the plain victim all fingerprints share (`FINGERPRINT_VICTIM`), against
        `num_fingerprint_references` plain models of the owner's recipe (seeds from the run's + 100; trained once and
        saved with the run's models), made on the test split."""
        if scheme not in self._fingerprints:
            victim = _trained_model(self, scheme, scratch)
            references = [self.reference_model(number, scratch)
                          for number in range(self.config.num_fingerprint_references)]
            test, seed = self.splits["test"], self.config.seed
            if scheme == "victim_errors":
                made = VictimErrorFingerprint.create(victim, test, references)
            elif scheme == "boundary":  # compare.py's sizes, within a small run's test split
                queries = min(BOUNDARY_QUERIES, len(test))
                made = BoundaryFingerprint.create(victim, test, references, num_queries=queries, seed=seed)
            else:
                made = DecisionDistanceFingerprint.create(victim, test, references,
                                                          num_pairs=min(DECISION_PAIRS, len(test)), seed=seed)
            self._fingerprints[scheme] = made
        return self._fingerprints[scheme]

    def reference_model(self, number: int, scratch: str):
        """The fingerprints' reference model `number`: the owner's recipe, plain, its own seed."""
        def train():
            seed = self.config.seed + 100 + number
            model = self.new_model(seed)
            args = TrainingArguments(**self.args(scratch, seed, self.config.epochs))
            Trainer(model=model, args=args, train_dataset=self.splits["owner"]).train()
            return model.eval()

        return _trained_model(self, f"_fingerprint_reference_{number}", scratch, train)

    def verify(self, scheme: str, model):
        """The scheme's own test (the ingrain test for the reference); `None` where a white-box test cannot apply."""
        if scheme in FINGERPRINTS:
            if scheme not in self._fingerprints:  # made once (its models trained or loaded in a scratch folder)
                import tempfile

                with tempfile.TemporaryDirectory() as scratch:
                    self.fingerprint(scheme, scratch)
            fingerprint = self._fingerprints[scheme]
            if scheme == "victim_errors":
                return fingerprint.test(model, self.splits["test"], alpha=self.config.verify_alpha)
            return fingerprint.test(model, alpha=self.config.verify_alpha)
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
        """The column `name` applied to `teacher`: the attack its file registered (`hf_ingrain.attacks.registry`), or
        a chain `a+b+c`, each attack on the previous one's result."""
        if "+" in name:
            for step in name.split("+"):
                teacher = self.attack(step, teacher, scratch)
            return teacher
        return attack_for_column(name)(teacher, self.attack_context(scratch))

    def attack_context(self, scratch: str) -> BenchmarkContext:
        """What every attack of the run is given: the attacker's split, the attacks' seed (the run's + 7), the run's
        scale, its models and the state the attacks keep."""
        return BenchmarkContext(
            config=self.config, attacker=self.splits["attacker"], seed=self.config.seed + 7,
            input_shape=self.input_shape, new_model=self.new_model,
            thief_model=lambda index: self.thief_model(index, scratch),
            training_args=lambda seed, epochs: self.args(scratch, seed, epochs), state=self._attack_state,
        )

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
        thief_key = self._attack_state["thief_key"]
        for name, model in (("thief", attacked), ("thief_on_original", original)):
            result = verify(model, thief_key, self.splits["test"], alpha=self.config.verify_alpha)
            claims.update({f"{name}_verified": bool(result.verified), f"{name}_p_value": result.p_value})
        claims["thief_key_commitment"] = thief_key.commitment()
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
    it (every fingerprint's from `models/_fingerprint_victim`: they protect one model)."""
    name = FINGERPRINT_VICTIM if scheme in FINGERPRINTS else scheme
    folder = os.path.join(experiment.output_dir, "models", name)
    return load_or_train(folder, train if train is not None else lambda: experiment.train(name, scratch))


