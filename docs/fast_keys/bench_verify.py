"""Times `verify` against keys with no, 16 and 64 reference ingrainers, in one run on one machine: the same suspect (a
transformers ResNet sized as `recipes/configs/mnist_resnet.yaml`), the same queries (the embedded MNIST sample's test
split), interleaved rounds (each in another order), the fastest round of each printed with its ratio to the key with
none. Each key is timed three times a round: on queries it has not answered before; again (a key keeps its
ingrainers' scores of the last two query sets: `hf_ingrain.keys.querying`), as when many suspects are verified; and
on the queries it committed to, loaded from its folder as in a later session (its folder keeps their scores from
`commit_queries`).

    python docs/fast_keys/bench_verify.py --output docs/fast_keys/verify_results.json

What is timed is `verify(model, key, queries)` alone (the keys are trained before, `--steps` steps each: a verification
costs the same whatever the ingrainers' weights are, so a short training times it as well as a full one). The key with
no references gets the binomial test alone; the others the key-draw test too.
"""

import argparse
import json
import os
import platform
import tempfile
import time

import torch
from transformers import ResNetConfig, ResNetForImageClassification

from hf_ingrain import WatermarkKey, verify
from hf_ingrain.data import load_image_dataset
from hf_ingrain.keys.querying import forget_scores


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps of each key (the timing does not use them)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--references", type=int, nargs="+", default=[0, 16, 64])
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    splits = load_image_dataset()
    queries = splits["test"]
    torch.manual_seed(0)
    model = ResNetForImageClassification(ResNetConfig(
        num_channels=1, embedding_size=32, hidden_sizes=[32, 64, 128], depths=[2, 2, 2], layer_type="basic",
        num_labels=10)).eval()
    keys = {}
    with tempfile.TemporaryDirectory(prefix="bench_verify_") as folder:  # removed on failure too
        for count in args.references:
            key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=100, seed=0)
            key.train_ingrainer(benign_dataset=splits["owner"], num_steps=args.steps, num_reference_keys=count,
                                show_progress=False, device="cpu")
            key.commit_queries(queries)
            key.save(os.path.join(folder, str(count)))
            keys[count] = key
        verify(model, keys[args.references[0]], queries)  # warm-up: first-call costs out of the timed rounds
        whens = ("first", "again", "committed")
        runs = [(count, when) for count in args.references for when in whens]
        timings = {f"{count} {when}": [] for count, when in runs}
        for round_index in range(args.rounds):
            for count, when in runs[round_index % len(runs):] + runs[:round_index % len(runs)]:
                key = keys[count]
                if when == "first":  # the first verification on these queries: forget the key's ingrainer scores
                    forget_scores(key)
                elif when == "again":  # a later one: the scores of these queries are in memory
                    verify(model, key, queries)
                else:  # a later session: the key read from its folder, with its committed queries' scores
                    key = WatermarkKey.load(os.path.join(folder, str(count)))
                name = f"{count} {when}"
                before, start = load(), time.perf_counter()
                verify(model, key, queries)
                timings[name].append({"wall_s": time.perf_counter() - start, "load_before": before,
                                      "load_after": load()})
                print(f"round {round_index}: {name}: {timings[name][-1]['wall_s']:.2f} s, load {before}", flush=True)
    table = ["| key | first verification on the queries, s | x no references | a later one, s | x no references "
             "| on the committed queries, key loaded, s | x no references |", "| --- |" + " ---: |" * 6]
    best = {name: min(t["wall_s"] for t in times) for name, times in timings.items()}
    base = {when: best[f"{args.references[0]} {when}"] for when in whens}
    for count in args.references:
        table.append(f"| {count} references | " + " | ".join(
            f"{best[f'{count} {when}']:.2f} | {best[f'{count} {when}'] / base[when]:.2f}" for when in whens) + " |")
    print("\n".join(table))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({"timings": timings, "num_queries": len(queries), "threads": torch.get_num_threads(),
                       "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count(), "table": table}, f, indent=1)


if __name__ == "__main__":
    main()
