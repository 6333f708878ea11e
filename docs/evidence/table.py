"""The compact table of issue 34, read from the results files `run.sh` writes: for each data set and model, the cost
of the watermark, and over the seeds how many models and students verify and the smallest p-value of a model that
never saw the key. Nothing is trained here.

    python docs/evidence/table.py            # prints the Markdown table the README and docs/evidence/README.md show

Each cell counts the seeds whose model verifies at alpha = 1e-6 with the key's 16 references, and says so when the same
key extended to 32 references verifies more of them; the p-value in it is the largest over seeds (the one that must
clear alpha). The images are judged by the runner-up test, the text by the scores protocol (`protocol="ingrain_scores"`,
the one that reads a text watermark at 4 epochs: docs/strength/README.md). "never saw the key" is every plain twin,
independent model and pre-trained checkpoint of the row, by every test the row ran: its smallest p-value.
"""

import json
import statistics
import sys
from pathlib import Path

from hf_ingrain.verification import DEFAULT_ALPHA, format_p_value

ROOT = Path(__file__).resolve().parents[2]
ALPHA = DEFAULT_ALPHA  # what verify() judges at

FINE_TUNED = "MNIST, 6,000 images, fine-tuned from `fashion_mnist`"
# (data, model, results files, test): the rows of the table, in order; the test is "runner-up" or "scores"
ROWS = [
    ("`fashion_mnist`, whole split", "ResNet", ["fashion_full_resnet", "fashion_full_resnet_students"], "runner-up"),
    ("`fashion_mnist`, whole split", "ConvNeXt", ["fashion_full_convnext", "fashion_full_convnext_students"],
     "runner-up"),
    ("`fashion_mnist`, whole split", "ViT", ["fashion_full_vit", "fashion_full_vit_students"], "runner-up"),
    ("`fashion_mnist`, 6,000 images", "ResNet", ["fashion6k_resnet"], "runner-up"),
    ("`fashion_mnist`, 6,000 images", "ConvNeXt", ["fashion6k_convnext"], "runner-up"),
    ("`fashion_mnist`, 6,000 images", "ViT", ["fashion6k_vit"], "runner-up"),
    *[(FINE_TUNED, model, [f"../fine_tune/fashion_to_mnist:{pick}"], "runner-up") for model, pick in
      (("ResNet", "resnet"), ("ResNet, LoRA", "resnet:lora"), ("ViT", "vit"), ("ViT, LoRA", "vit:lora"))],
    ("`health_tweets`, 23,000 tweets, 16 classes", "BERT",
     ["../strength/health_tweets_23k_h128_scores", "../strength/health_tweets_23k_h128_t1_other_keys",
      "../strength/health_tweets_23k_h128_attacks"], "scores"),
    ("`rotten_tomatoes`, 4,000 reviews, 2 classes", "BERT",
     ["../strength/rotten_tomatoes", "../strength/rotten_tomatoes_students"], "scores"),
    ("`rotten_tomatoes`, 4,000 reviews, fine-tuned from `health_tweets`", "BERT",
     ["../strength/rotten_tomatoes_from_tweets"], "scores"),
]

# every file's kinds of model, by the names the scripts give them: the watermarked model, its students, and the
# models that never saw the key
KINDS = {"model": ("ingrain", "fixed"), "T = 4": ("student", "student_T4"), "T = 1": ("student_t1", "student_T1"),
         "labels": ("student_label",)}
NEVER_KEYED = ("plain", "independent", "base")


def read(name: str, folder: Path) -> list[dict]:
    """The rows of results file `name` (relative to `folder`, without `.json`); `file:architecture[:lora]` picks the
    rows of one architecture of a fine-tuning file, with or without LoRA, named as the other files name them."""
    path, *pick = name.split(":")
    if not (folder / f"{path}.json").is_file():
        return []  # not measured yet: its cells say so
    rows = json.loads((folder / f"{path}.json").read_text())["rows"]
    if not pick:
        return [{**row, "kind": row.get("model") or row.get("mode")} for row in rows]
    architecture, lora = pick[0], pick[1:] == ["lora"]
    picked = []
    for row in rows:
        kind = row["model"]
        if row["architecture"] != architecture or (kind != "base" and kind.endswith("_lora") != lora):
            continue  # the pre-trained checkpoint ("base") is in both
        picked.append({**row, "kind": kind.removesuffix("_lora")})
    return picked


def p_fields(test: str) -> tuple[str, str]:
    """The fields of a row's p-value with 16 and with 32 references."""
    return ("p_value", "p_value_2") if test == "runner-up" else ("p_value_scores", "p_value_scores_2")


def p_text(value: float) -> str:
    """A p-value in two significant digits, as the tables write it: 1e-7, 1.3e-6, 0.0003, 1."""
    return format_p_value(value, relation=False, spec=".2g").replace("e-0", "e-")


def verified_cell(rows: list[dict], test: str, labels_only: bool = False) -> str:
    """How many seeds verify, the largest p; with 32 references where that verifies more; and with `labels_only`,
    how many verify from their labels alone (`protocol="ingrain_labels"`), where the rows measured it."""
    if not rows:
        return "not measured"
    first, second = p_fields(test)
    values = [row[first] for row in rows]
    cell = f"{sum(value <= ALPHA for value in values)}/{len(values)}, p ≤ {p_text(max(values))}"
    extended = [row.get(second) for row in rows]
    if all(value is not None for value in extended):
        count = sum(value <= ALPHA for value in extended)
        if count != sum(value <= ALPHA for value in values):
            cell += f" ({count}/{len(values)} with 32 references)"
    from_labels = [row.get("label_p_value") for row in rows]
    if labels_only and all(value is not None for value in from_labels):  # the test a label-only suspect allows
        cell += f"; from its labels {sum(value <= ALPHA for value in from_labels)}/{len(values)}"
    return cell


def row_cells(files: list[str], test: str, folder: Path) -> list[str]:
    rows = []
    for name in files:
        found = read(name, folder)
        known = {(row["kind"], row.get("seed")) for row in rows}
        rows += [row for row in found if (row["kind"], row.get("seed")) not in known]  # the first file's rows first

    def of(kinds):
        return [row for row in rows if row["kind"] in kinds]

    plain = {row["seed"]: row["accuracy"] for row in of(("plain",))}
    cost = [100 * (plain[row["seed"]] - row["accuracy"]) for row in of(KINDS["model"]) if row["seed"] in plain]
    cost_cell = "-" if not cost else (f"{cost[0]:.1f}" if len(cost) == 1 else
                                      f"{statistics.mean(cost):.1f} ± {statistics.stdev(cost):.1f}")
    innocent = [row.get(field) for row in of(NEVER_KEYED)
                for field in (*p_fields(test), "label_p_value") if row.get(field) is not None]
    return [cost_cell, *(verified_cell(of(KINDS[kind]), test, kind == "labels") for kind in KINDS),
            f"{p_text(min(innocent))} ({len(of(NEVER_KEYED))} models)" if innocent else "-"]


def table(rows=ROWS, folder: Path = ROOT / "docs" / "evidence") -> str:
    lines = ["| data | model | cost (points) | model verified | student, T = 4 | student, T = 1 | student of labels | "
             "never saw the key: smallest p |", "|---|---|---|---|---|---|---|---|"]
    for data, model, files, test in rows:
        lines.append("| " + " | ".join([data, model, *row_cells(files, test, folder)]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
    sys.exit(0)
