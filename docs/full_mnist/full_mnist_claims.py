r"""
The full-MNIST claims end to end, as a dispute runs them, on the models `full_mnist_tables.sh` trains: every key
audited (its ingrainer and 16 references trained again from its seed on the owner's split and compared bit for bit,
timed), each ingrained teacher published by its owner with an RFC 3161 timestamp of its key's commitment, then the
runs' students, a raw copy of the teacher and the independent models uploaded by someone else, and each of those
claimed with `verify_from_hub(..., reference_repo_id=..., timestamp_ca=..., key_audit=...)` on the committed test
split. The key-0 suspects are claimed by key 0; the hard-label students by their own key; the independent models by
every key.

The Hub is the package's loopback test server (`tests/hub_server.py`) and the time-stamping authority a local one made
with `openssl` (`tests/local_tsa.py`): what this measures is the claim's statistics and checks at full scale, not the
real Hub's dates (the precedence tests, `tests/test_precedence.py`, attack those).

    bash docs/full_mnist/full_mnist_tables.sh /path/to/mnist OUT_DIR      # the models, the tables, then this
    python docs/full_mnist/full_mnist_claims.py --runs OUT_DIR --dataset /path/to/mnist \
        --output docs/full_mnist/claims.json                             # this step alone

Resumable: a key's audit already in `--output` (same commitment) is not run again; everything else (the claims, a
few minutes) is.
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = (0, 1, 2)
INDEPENDENT = (1, 2, 3, 4)
KEY0_SUSPECTS = ("T1", "T4", "T4s2", "T10", "label0")


def _test_helper(name: str):
    """tests/<name>.py, the test suite's own helper (stdlib only)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tests", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def start_servers(folder: str):
    """The loopback Hub (the client's default endpoint from here on) and a local TSA; both from the tests."""
    HubServer, LocalTSA = _test_helper("hub_server").HubServer, _test_helper("local_tsa").LocalTSA
    hub = HubServer().start()
    # huggingface_hub reads these once, at import: set them before anything imports it
    os.environ.update(HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1")
    os.environ.pop("HF_TOKEN", None)
    return hub, LocalTSA(os.path.join(folder, "tsa"), "Local TSA")


def read_json(path):
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def audit(key, dataset: str, saved: list):
    """The key's audit on the owner's split (as `hf-ingrain audit-key KEY --data DATASET` runs it), and its record;
    the record of an earlier audit of the same key (commitment) in `saved` instead, if any."""
    import torch

    from hf_ingrain.cli.audit import audit_from_arguments
    from hf_ingrain.keys.audit import KeyAudit

    for record in saved:
        if record.get("commitment") == key.commitment():
            return KeyAudit(**record["audit"]), record
    start = time.perf_counter()
    result = audit_from_arguments(key, dataset, "owner", 0, None)
    record = {"commitment": key.commitment(), "seconds": round(time.perf_counter() - start, 1),
              "threads": torch.get_num_threads(), "audit": asdict(result)}
    print(f"audit of {key.commitment()[:12]}: {result.passed}, {record['seconds']} s", flush=True)
    return result, record


def upload(api, repo_id: str, folder: str) -> str:
    """A suspect as anyone uploads it: the run's config and safetensors weights, nothing of the key."""
    from huggingface_hub import CommitOperationAdd

    api.create_repo(repo_id, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=os.path.join(folder, name))
                  for name in ("config.json", "model.safetensors")]
    return api.create_commit(repo_id, operations, commit_message="upload").oid


def claim_row(result, seconds: float) -> dict:
    return {"test_verified": result.test_verified, "claim_stands": result.verified, "p_value": result.p_value,
            "agreement": result.agreement, "num_queries": result.num_queries,
            "committed_queries": result.committed_queries, "committed_test": result.committed_test,
            "precedence": result.claim["precedence"], "refusals": result.claim["refusals"],
            "seconds": round(seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="The folder full_mnist_tables.sh wrote.")
    parser.add_argument("--dataset", required=True, help="The MNIST copy the runs used (parquet layout) or its Hub id.")
    parser.add_argument("--output", required=True, help="JSON file to write (and to resume from).")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="full_mnist_claims_")  # the TSA's files and the download cache
    hub, tsa = start_servers(scratch)
    try:
        claim_all(args, hub, tsa, scratch)
    finally:
        hub.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def claim_all(args, hub, tsa, scratch: str) -> None:
    from huggingface_hub import HfApi

    from hf_ingrain import WatermarkKey
    from hf_ingrain.data import load_image_dataset
    from hf_ingrain.files import write_json
    from hf_ingrain.hub import push_to_hub, verify_from_hub

    previous = read_json(args.output)
    test = load_image_dataset(args.dataset, seed=0)["test"]  # the recipes' split: the queries the keys committed to
    api = HfApi(endpoint=hub.endpoint)
    keys, audits, owners = {}, {}, {}
    output = {"audits": {}, "claims": {}, "endpoint": "loopback test Hub (tests/hub_server.py)",
              "timestamp_authority": "local openssl TSA (tests/local_tsa.py)"}
    for k in KEYS:
        keys[k] = WatermarkKey.load(os.path.join(args.runs, "keys", f"k{k}"))
        saved = [*previous.get("audits", {}).values(), *output["audits"].values()]
        audits[k], output["audits"][k] = audit(keys[k], args.dataset, saved)
        write_json(args.output, output, sort_keys=True)
        owners[k] = f"owner/mnist-resnet-key{k}"
        token = tsa.stamp(keys[k].commitment())  # first the timestamp, then the publication
        push_to_hub(os.path.join(args.runs, f"teacher{k}"), owners[k], keys[k], verification_dataset=test,
                    timestamp=token)

    suspects = [(name, 0) for name in KEY0_SUSPECTS] + [("copy0", 0), ("label1", 1), ("label2", 2)]
    suspects += [(f"indep{s}", k) for s in INDEPENDENT for k in KEYS]
    for name, k in suspects:
        folder = os.path.join(args.runs, "teacher0" if name == "copy0" else name)
        repo_id = f"someone/{name}"
        if not api.repo_exists(repo_id):
            upload(api, repo_id, folder)
        start = time.perf_counter()
        result = verify_from_hub(repo_id, keys[k], test, reference_repo_id=owners[k], timestamp_ca=tsa.ca_file,
                                 key_audit=audits[k], cache_dir=os.path.join(scratch, "cache"))
        output["claims"][f"{name} / key {k}"] = claim_row(result, time.perf_counter() - start)
        write_json(args.output, output, sort_keys=True)
        row = output["claims"][f"{name} / key {k}"]
        print(f"{name} / key {k}: test {row['test_verified']} (p = {row['p_value']:.3g}), claim "
              f"{'STANDS' if row['claim_stands'] else 'refused'} {row['refusals']}", flush=True)
    print(markdown(output))


def markdown(output: dict) -> str:
    from hf_ingrain.verification import format_p_value

    lines = ["| suspect | key | watermark present (p) | claim | why not |", "|---|---|---|---|---|"]
    for name, row in output["claims"].items():
        suspect, key = name.split(" / key ")
        present = f"{'yes' if row['test_verified'] else 'no'} ({format_p_value(row['p_value'], relation=False)})"
        why = "; ".join(r.split(":")[0] for r in row["refusals"])
        why = why if row["test_verified"] else "; ".join(filter(None, ["watermark not found at alpha", why]))
        lines.append(f"| {suspect} | {key} | {present} | {'stands' if row['claim_stands'] else 'refused'} | {why} |")
    lines += ["", "| key | audit | ingrainers re-derived | seconds | threads |", "|---|---|---|---|---|"]
    for k, record in output["audits"].items():
        result = record["audit"]
        lines.append(f"| {k} | {'passed' if result['passed'] else 'REFUSED'} | {len(result['checked'])} | "
                     f"{record['seconds']} | {record['threads']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
