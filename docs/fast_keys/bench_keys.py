"""Times a key's training, in one run on one machine: a key with no reference ingrainers, today's sequential key (the
ingrainer and 16 references trained one after another as plain modules, on all of torch's threads, as hf_ingrain did
before the batched model), and the batched key with 16 and with 64 references (`hf_ingrain.keys.batched`).

    python docs/fast_keys/bench_keys.py --output docs/fast_keys/results.json

Every key is the quick start's: 100 carriers, 600 steps, spread over the embedded MNIST sample's owner split. The
runs are interleaved (`--rounds` rounds, each in another order), with the machine's load average before and after
each, since the machine may be shared; wall and process CPU seconds are both printed. `--steps` and `--rounds` make a
shorter run (a check of the script). Equality is checked as well: the batched members against the sequential ones
(bit for bit on one thread; on more, the sequential modules use intra-op threads and differ by rounding).
"""

import argparse
import json
import os
import platform
import time

import torch

from hf_ingrain import WatermarkKey
from hf_ingrain.data import load_image_dataset, prepare_dataset
from hf_ingrain.keys.ingrainer import benign_tensors, fit_ingrainer, reference_keys


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def timed(work):
    before, wall, cpu = load(), time.perf_counter(), time.process_time()
    result = work()
    return result, {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "load_before": before,
                    "load_after": load()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--references", type=int, nargs="+", default=[16, 64], help="batched keys' reference counts")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    splits = load_image_dataset()

    def new_key():
        return WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=100, seed=0)

    def batched(num_references):
        def work():
            key = new_key()
            key.train_ingrainer(benign_dataset=splits["owner"], num_steps=args.steps, num_reference_keys=num_references,
                                show_progress=False, device="cpu")
            return [key.ingrainer, *key.reference_ingrainers]
        return work

    def sequential(num_references):
        def work():  # hf_ingrain before the batched model: fit_ingrainer for each key, on all of torch's threads
            key = new_key()
            benign_inputs, benign_labels = benign_tensors(key, prepare_dataset(splits["owner"], key))
            options = (None, benign_inputs, benign_labels, args.steps, 1e-3, 1.0, 0.3, 2.0, 256)
            return [fit_ingrainer(member, *options)[0] for member in [key, *reference_keys(key, num_references)]]
        return work

    runs = {"no references": batched(0), "sequential 16 (before)": sequential(16)}
    runs.update({f"batched {count}": batched(count) for count in args.references})
    names = list(runs)
    results = {name: [] for name in names}
    members = {}
    for round_index in range(args.rounds):
        order = names[round_index % len(names):] + names[:round_index % len(names)]
        for name in order:
            models, timing = timed(runs[name])
            results[name].append(timing)
            members[name] = models
            print(f"round {round_index}: {name}: {timing['wall_s']:.1f} s wall, {timing['cpu_s']:.1f} s CPU, "
                  f"load {timing['load_before']} -> {timing['load_after']}", flush=True)
    equal = None
    if "batched 16" in members:
        pairs = zip(members["batched 16"], members["sequential 16 (before)"])
        equal = all(torch.equal(a.state_dict()[n], w) for a, b in pairs for n, w in b.state_dict().items())
    base = min(r["wall_s"] for r in results["no references"])
    rows = []
    for name in names:
        wall = min(r["wall_s"] for r in results[name])
        cpu = min(r["cpu_s"] for r in results[name])
        rows.append({"key": name, "wall_s": wall, "cpu_s": cpu, "ratio_to_no_references": wall / base})
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{threads} threads, {args.steps} steps, {args.rounds} round(s) (fastest of the rounds)")
    print("| key | wall s | CPU s | x no references |\n| --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['key']} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['ratio_to_no_references']:.1f} |")
    print(f"batched 16 == sequential 16, every member bit for bit: {equal}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"threads": threads, "steps": args.steps, "rounds": results, "table": rows,
                       "batched_equals_sequential": equal, "torch": torch.__version__}, f, indent=2)


if __name__ == "__main__":
    main()
