r"""
The full-MNIST tables of `docs/full_mnist/README.md`, from the outputs of the recipe runs that `full_mnist_tables.sh`
makes: reads each run's results file (verification on the 10,000 test images), verifies every hard-label student and
the independent models on the owner's 30,000 training images too (benign queries the students never saw), and prints
the tables as Markdown and writes them, with every number, to `--output` (JSON).

    bash docs/full_mnist/full_mnist_tables.sh /path/to/mnist OUT_DIR    # trains everything, then runs this script
    python docs/full_mnist/full_mnist_tables.py --runs OUT_DIR --dataset /path/to/mnist \
        --output docs/full_mnist/results.json
"""

import argparse
import json
import os

from hf_ingrain import WatermarkKey, verify
from hf_ingrain.data import load_image_dataset
from hf_ingrain.files import write_json
from hf_ingrain.suspects import load_model
from hf_ingrain.verification import format_p_value

KEYS = (0, 1, 2)
INDEPENDENT = (1, 2, 3, 4)
STUDENTS = {"T1": "student, logits, T = 1", "T4": "student, logits, T = 4 (seed 1)",
            "T4s2": "student, logits, T = 4 (seed 2)", "T10": "student, logits, T = 10",
            "label0": "student, hard labels only"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def cell(result: dict) -> str:
    verdict = "yes" if result["verified"] else "no"
    return f"{verdict} (p = {format_p_value(result['p_value'], relation=False)})"


def summary(result: dict) -> dict:
    key_draw = result["details"].get("key_draw") or {}
    return {
        "agreement": result["agreement"], "null_rate": result["null_rate"], "p_value": result["p_value"],
        "p_value_binomial": result["details"].get("p_value_binomial"), "verified": result["verified"],
        "reference_mean": key_draw.get("mean"), "reference_sd": key_draw.get("sd"), "t": key_draw.get("t"),
        "accuracy": result["details"].get("accuracy"), "num_queries": result["num_queries"],
        "committed_queries": result.get("committed_queries"), "committed_test": result.get("committed_test"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="The folder full_mnist_tables.sh wrote.")
    parser.add_argument("--dataset", required=True, help="The local MNIST copy the runs used (parquet layout).")
    parser.add_argument("--output", required=True, help="JSON file to write.")
    args = parser.parse_args()
    runs = args.runs
    tables = {"test_split": {}, "hard_label": {}}

    teacher = read(os.path.join(runs, "teacher0", "ingrain_results.json"))
    tables["test_split"]["teacher"] = summary(teacher["verification"])
    for name in STUDENTS:
        results = read(os.path.join(runs, name, "distill_results.json"))
        tables["test_split"][name] = summary(results["student_verification"])
    for seed in INDEPENDENT:
        results = read(os.path.join(runs, f"indep{seed}", "ingrain_results.json"))
        tables["test_split"][f"indep{seed}"] = summary(results["verification"])

    owner = load_image_dataset(args.dataset, seed=0)["owner"]  # the recipes' split (dataset_split_seed 0)
    independent = {seed: load_model(os.path.join(runs, f"indep{seed}")) for seed in INDEPENDENT[:3]}
    for k in KEYS:
        key = WatermarkKey.load(os.path.join(runs, "keys", f"k{k}"))
        student_dir = os.path.join(runs, f"label{k}")
        row = {"test": summary(read(os.path.join(student_dir, "distill_results.json"))["student_verification"])}
        row["owner"] = summary(verify(load_model(student_dir), key, owner).to_dict())
        row["independent_owner"] = {
            seed: summary(verify(model, key, owner).to_dict()) for seed, model in independent.items()
        }
        tables["hard_label"][k] = row
        print(f"key {k} done", flush=True)

    write_json(args.output, tables, sort_keys=True)
    print(markdown(tables))


def markdown(tables: dict) -> str:
    test = tables["test_split"]
    lines = ["| model | test accuracy | agreement with the key | null rate | reference keys (mean, sd) | verified |",
             "|---|---|---|---|---|---|"]
    rows = [("ingrained teacher (λ = 0.5, T = 4)", "teacher")] + [(label, name) for name, label in STUDENTS.items()]
    for label, name in rows:
        r = test[name]
        lines.append(f"| {label} | {r['accuracy']:.3f} | {r['agreement']:.3f} | {r['null_rate']:.3f} | "
                     f"{r['reference_mean']:.3f}, {r['reference_sd']:.3f} | {cell(r)} |")
    ind = [test[f"indep{s}"] for s in INDEPENDENT]
    lines.append(
        f"| {len(ind)} independent ResNets (never saw the key) | {min(r['accuracy'] for r in ind):.3f}-"
        f"{max(r['accuracy'] for r in ind):.3f} | {min(r['agreement'] for r in ind):.3f}-"
        f"{max(r['agreement'] for r in ind):.3f} | {ind[0]['null_rate']:.3f} | | "
        f"{'no' if not any(r['verified'] for r in ind) else 'YES'} (smallest p = "
        f"{format_p_value(min(r['p_value'] for r in ind), relation=False)}) |"
    )
    lines += ["", "| key | hard-label student, test split (10,000) | the same, owner's split (30,000) | "
              "3 independent ResNets, owner's split |", "|---|---|---|---|"]
    for k, row in tables["hard_label"].items():
        t, o, ind = row["test"], row["owner"], list(row["independent_owner"].values())
        lines.append(
            f"| {k} | {t['agreement']:.3f} / {t['null_rate']:.3f}, refs {t['reference_mean']:.3f} ± "
            f"{t['reference_sd']:.3f}: {cell(t)} | {o['agreement']:.3f} / {o['null_rate']:.3f}, refs "
            f"{o['reference_mean']:.3f} ± {o['reference_sd']:.3f}: {cell(o)} | "
            f"{min(r['agreement'] for r in ind):.3f}-{max(r['agreement'] for r in ind):.3f}, "
            f"{'none verified' if not any(r['verified'] for r in ind) else 'VERIFIED'} (smallest p = "
            f"{format_p_value(min(r['p_value'] for r in ind), relation=False)}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
