"""How long a key trains, and whether the README's quick start still verifies with it: the quick start's code (the
embedded MNIST sample, a key of 100 carriers trained on the owner split with 16 references, the package's small CNN
ingrained for 15 epochs at λ = 0.5, T = 4, `verify` on the test split) for each ingrainer recipe (`--steps` and
`--batch_sizes`, the benign examples per step) and each seed (the key's, the model's and the Trainer's). With
`--student_temperature T`, a student of the same architecture is then distilled from the model at temperature T on the
attacker split (15 epochs, its own seed) and verified too (`student_p`).

    OMP_NUM_THREADS=1 python docs/fast_keys/key_recipe.py --steps 150 300 600 --batch_sizes 128 256 --seeds 0 1 2 \\
        --output docs/fast_keys/key_recipe.json

One row per (steps, batch size, seed), resumable (rows already in `--output` are kept). `key_s` is the key's training
time on this process's threads (one thread each member), `p` the quick start's p-value.
"""

import argparse
import json
import os
import tempfile
import time

import torch

from hf_ingrain import DistillationConfig, DistillationTrainer, IngrainConfig, IngrainTrainer, WatermarkKey, verify
from hf_ingrain.data import load_image_dataset
from hf_ingrain.files import write_json
from hf_ingrain.models import SmallCNNConfig, SmallCNNForImageClassification


def student_p_value(splits, teacher, key, temperature: float, seed: int) -> float:
    """The p-value of a student distilled from `teacher` at `temperature` on the attacker split."""
    torch.manual_seed(seed + 100)
    student = SmallCNNForImageClassification(SmallCNNConfig(num_labels=10))
    with tempfile.TemporaryDirectory() as output_dir:
        args = DistillationConfig(output_dir=output_dir, temperature=temperature, num_train_epochs=15,
                                  per_device_train_batch_size=64, learning_rate=1e-3, report_to="none",
                                  disable_tqdm=True, seed=seed + 100, save_strategy="no", logging_strategy="no")
        DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=splits["attacker"]).train()
    return verify(student, key, splits["test"]).p_value


def run(splits, steps: int, batch_size: int, seed: int, student_temperature: float | None = None) -> dict:
    key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=100, seed=seed)
    start = time.perf_counter()
    key.train_ingrainer(benign_dataset=splits["owner"], num_steps=steps, batch_size=batch_size, show_progress=False)
    key_s = time.perf_counter() - start
    key.commit_queries(splits["test"])
    torch.manual_seed(seed)
    model = SmallCNNForImageClassification(SmallCNNConfig(num_labels=10))
    with tempfile.TemporaryDirectory() as output_dir:
        args = IngrainConfig(output_dir=output_dir, ingrain_lambda=0.5, ingrain_temperature=4.0, num_train_epochs=15,
                             per_device_train_batch_size=64, learning_rate=1e-3, report_to="none", disable_tqdm=True,
                             seed=seed, save_strategy="no", logging_strategy="no")
        trainer = IngrainTrainer(model=model, args=args, train_dataset=splits["owner"], ingrainer=key)
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
    result = verify(model, key, splits["test"])
    print(result, flush=True)
    student = {} if student_temperature is None else {
        "student_temperature": student_temperature,
        "student_p": student_p_value(splits, model, key, student_temperature, seed)}
    return {**student, "steps": steps, "batch_size": batch_size, "seed": seed, "key_s": key_s, "train_s": train_s,
            "threads": torch.get_num_threads(), "p": result.p_value, "agreement": result.agreement,
            "null_rate": result.null_rate, "verified": bool(result.verified),
            "carrier_accuracy": key.training_info["carrier_accuracy"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[150, 300, 600])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--student_temperature", type=float, default=None)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    rows = json.load(open(args.output)) if os.path.exists(args.output) else []
    splits = load_image_dataset()
    for seed in args.seeds:
        for steps in args.steps:
            for batch_size in args.batch_sizes:
                if any((r["steps"], r["batch_size"], r["seed"]) == (steps, batch_size, seed)
                       and r.get("student_temperature") == args.student_temperature for r in rows):
                    continue
                rows.append(run(splits, steps, batch_size, seed, args.student_temperature))
                write_json(args.output, rows, indent=1)
    print("| steps | batch | seed | key, s | p | agreement / null rate | student T | student p |\n"
          "|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in sorted(rows, key=lambda r: (r["steps"], r["batch_size"], r["seed"], r.get("student_temperature") or 0)):
        student = (f"{r['student_temperature']:g} | {r['student_p']:.1e}" if r.get("student_temperature") is not None
                   else "- | -")
        print(f"| {r['steps']} | {r['batch_size']} | {r['seed']} | {r['key_s']:.0f} | {r['p']:.1e} | "
              f"{r['agreement']:.3f} / {r['null_rate']:.3f} | {student} |")


if __name__ == "__main__":
    main()
