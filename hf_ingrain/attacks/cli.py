"""`hf-ingrain attack {distill,finetune,prune,quantize}`: attack a saved model and save the result with its card.

    hf-ingrain attack distill  --model PATH_OR_ID --output DIR [--data NAME_OR_PATH] [--temperature 4] ...
    hf-ingrain attack finetune --model PATH_OR_ID --output DIR [--data NAME_OR_PATH] [--mode FTAL] ...
    hf-ingrain attack prune    --model PATH_OR_ID --output DIR [--rate 0.5]
    hf-ingrain attack quantize --model PATH_OR_ID --output DIR [--bits 8]

The attacker's data is the `attacker` split of [`load_image_dataset`] (default: the embedded MNIST sample).
"""

import argparse
import copy
import tempfile

import torch

from .distillation_config import TEACHER_OUTPUTS
from .finetune import MODES

EXIT_ERROR = 2


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("attack", help="Run a watermark-removal attack on a model and save the result.")
    parser.set_defaults(func=lambda args: parser.print_help() or EXIT_ERROR)
    attacks = parser.add_subparsers(dest="attack", metavar="ATTACK")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True, help="The target: a folder written by save_pretrained, or a Hub id.")
    common.add_argument("--output", required=True, help="New folder for the attacked model and its card.")
    common.add_argument("--seed", type=int, default=0, help="Seed of initialisation and training order.")
    training = argparse.ArgumentParser(add_help=False)
    training.add_argument("--data", default=None, help="Data set name, Hub id or folder (default: embedded MNIST).")
    training.add_argument("--epochs", type=float, default=20, help="Passes over the attacker's data.")
    training.add_argument("--max-steps", type=int, default=-1, help="If positive, train this many steps instead.")

    distill = attacks.add_parser("distill", parents=[common, training], help="Distil a student from the model.")
    distill.add_argument("--temperature", type=float, default=4.0, help="Softmax temperature of the soft loss.")
    distill.add_argument("--alpha", type=float, default=1.0, help="Weight of the teacher term (1.0: no labels used).")
    distill.add_argument(
        "--teacher-output", choices=TEACHER_OUTPUTS, default="logits", help="What the teacher exposes."
    )
    distill.add_argument("--top-k", type=int, default=5, help="Scores exposed with --teacher-output top_k.")
    distill.add_argument("--student-arch", choices=("same", "small"), default="same",
                         help="'same': a fresh copy of the teacher's architecture; 'small': a small CNN.")
    distill.add_argument("--batch-size", type=int, default=64)
    distill.add_argument("--learning-rate", type=float, default=1e-3)
    distill.set_defaults(func=_distill)

    finetune = attacks.add_parser("finetune", parents=[common, training], help="Fine-tune it (Adi et al. 2018).")
    finetune.add_argument(
        "--mode", choices=MODES, default="FTAL",
        help="FT/RT: keep/re-initialise the last layer; LL/AL: then train the last layer/all layers.",
    )
    finetune.add_argument("--batch-size", type=int, default=100)
    finetune.add_argument("--learning-rate", type=float, default=1e-3)
    finetune.set_defaults(func=_finetune)

    prune = attacks.add_parser("prune", parents=[common], help="Zero its smallest weights (global magnitude pruning).")
    prune.add_argument("--rate", type=float, default=0.5, help="Fraction of the weights set to zero.")
    prune.set_defaults(func=_prune)

    quantize = attacks.add_parser("quantize", parents=[common], help="Quantize its weights to k bits per tensor.")
    quantize.add_argument("--bits", type=int, default=8)
    quantize.set_defaults(func=_quantize)


def _load(args):
    """Loads the target and checks the output folder, before any long work."""
    from .model_io import check_output_dir, load_model

    check_output_dir(args.output)
    return load_model(args.model)


def _attacker_data(args):
    from ..data import load_image_dataset

    return load_image_dataset(args.data)["attacker"]


def _save(model, args, attack: str, parameters: dict) -> int:
    from .model_io import save_attacked_model

    path = save_attacked_model(model, args.output, attack, parameters, source=args.model)
    print(f"{attack}: saved the attacked model and its card to {path}")
    return 0


def _student(teacher, arch: str, example, seed: int):
    from ..models import SmallCNNConfig, SmallCNNForImageClassification

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "same":
            return type(teacher)(copy.deepcopy(teacher.config))
        channels, height, _ = example["pixel_values"].shape
        config = SmallCNNConfig(
            num_channels=channels, image_size=height, hidden_channels=(8, 16), hidden_size=32,
            num_labels=teacher.config.num_labels, id2label=teacher.config.id2label, label2id=teacher.config.label2id,
        )
        return SmallCNNForImageClassification(config)


def _distill(args) -> int:
    from .distillation_config import DistillationConfig
    from .distillation_trainer import DistillationTrainer

    teacher = _load(args)
    data = _attacker_data(args)
    student = _student(teacher, args.student_arch, data[0], args.seed)
    parameters = {
        "temperature": args.temperature, "alpha": args.alpha, "teacher_output": args.teacher_output,
        "top_k": args.top_k, "student_arch": args.student_arch, "epochs": args.epochs, "max_steps": args.max_steps,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate, "seed": args.seed,
        "data": args.data or "mnist-5k", "num_examples": len(data),
    }
    with tempfile.TemporaryDirectory() as scratch:
        config = DistillationConfig(
            output_dir=scratch, temperature=args.temperature, alpha=args.alpha, teacher_output=args.teacher_output,
            top_k=args.top_k, num_train_epochs=args.epochs, max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
            report_to="none", save_strategy="no", logging_strategy="no", use_cpu=not torch.cuda.is_available(),
        )
        DistillationTrainer(model=student, teacher=teacher, args=config, train_dataset=data).train()
    return _save(student.eval(), args, "distillation", parameters)


def _finetune(args) -> int:
    from .finetune import FineTuneAttack

    model = _load(args)
    data = _attacker_data(args)
    attack = FineTuneAttack(
        model, mode=args.mode, learning_rate=args.learning_rate, num_train_epochs=args.epochs,
        batch_size=args.batch_size, max_steps=args.max_steps, seed=args.seed,
    )
    parameters = {**attack.parameters, "data": args.data or "mnist-5k", "num_examples": len(data)}
    return _save(attack.run(data), args, "finetune", parameters)


def _prune(args) -> int:
    from .prune import PruneAttack

    attack = PruneAttack(_load(args), rate=args.rate)
    return _save(attack.run(), args, "prune", attack.parameters)


def _quantize(args) -> int:
    from .quantize import QuantizeAttack

    attack = QuantizeAttack(_load(args), bits=args.bits)
    return _save(attack.run(), args, "quantize", attack.parameters)
