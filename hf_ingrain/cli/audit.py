"""`hf-ingrain audit-key KEY --data DATA`: re-derive a key's ingrainers from its seed, its recipe and its benign data,
and compare them with what the key holds. Exit 0 audited, 1 refused, 2 error.

In a dispute the owner shows the key and the data it was trained on; anyone can then run this (see
[`hf_ingrain.keys.audit_key`]). `hf-ingrain verify ... --reference OWNER/REPO --audit-data DATA` audits the key the same
way before a claim, which stands only on an audited key.
"""

EXIT_AUDITED, EXIT_REFUSED = 0, 1


def add_audit_data_arguments(parser, prefix: str = "") -> None:
    """The flags that name the key's benign data (`--data`, or `--audit-data` in another command)."""
    parser.add_argument(
        f"--{prefix}data", default=None, metavar="NAME_OR_PATH",
        help="The benign data the key was trained on: mnist-5k (embedded), a Hub id, a local folder or a save_to_disk "
        "folder; raw images go through --processor.",
    )
    parser.add_argument(f"--{prefix}split", default="owner", help="Its split the key was trained on (default: owner).")
    parser.add_argument(f"--{prefix}seed", type=int, default=0, help="Seed of its split assignment (default: 0).")
    parser.add_argument(
        f"--{prefix}references", type=int, default=None, metavar="N",
        help="Re-train N of the reference ingrainers, drawn at random now (default: every one).",
    )


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit-key",
        help="Re-derive a key's ingrainers from its seed and benign data (exit 0 audited, 1 refused, 2 error).",
        description="Checks that the key's carriers come from its seed, that DATA is the data it was trained on, that its "
        "reference ingrainers are distinct, then trains every ingrainer again on the CPU and compares it with the key's, "
        "bit for bit. Exit status: 0 audited, 1 refused, 2 error.",
    )
    parser.add_argument("key", metavar="KEY", help="Folder of the key.")
    add_audit_data_arguments(parser)
    parser.add_argument("--processor", default=None, metavar="DIR", help="Image processor or tokenizer for raw data.")
    parser.set_defaults(func=run)


def load_audit_data(name_or_path, split: str, seed: int = 0, processor=None):
    """The benign data an audit re-trains on: a split of an image data set, or of a save_to_disk folder or file as
    users keep them (raw, for `processor`)."""
    import os

    from ..data import load_data, load_image_dataset
    from ..data.preparation import is_saved_dataset

    if is_saved_dataset(name_or_path) or os.path.isfile(name_or_path):
        return load_data(name_or_path, split)
    splits = load_image_dataset(name_or_path, seed=seed, raw=processor is not None)
    if split not in splits:
        raise ValueError(f"No split {split!r} in {name_or_path!r}; choose one of {sorted(splits)}.")
    return splits[split]


def audit_from_arguments(key, data, split, seed, references, processor=None):
    """[`~hf_ingrain.keys.audit_key`] of `key` on the benign data the flags name (none: a key trained without)."""
    from ..keys import audit_key

    if references is not None and references < 0:
        raise ValueError(f"--references must be >= 0, got {references}.")
    if data is None and (key.training_info or {}).get("benign_digest") is not None:
        raise ValueError("The key was trained on benign data: name it (--data and --split; in verify, --audit-data).")
    benign = None if data is None else load_audit_data(data, split, seed, processor)
    return audit_key(key, benign, num_references=references, processor=processor)


def run(args) -> int:
    from ..data import load_processor
    from ..keys import WatermarkKey

    key = WatermarkKey.load(args.key)
    processor = load_processor(args.processor) if args.processor else None
    if args.processor and processor is None:
        raise ValueError(f"--processor {args.processor}: no image processor or tokenizer files there.")
    audit = audit_from_arguments(key, args.data, args.split, args.seed, args.references, processor)
    print(audit)
    return EXIT_AUDITED if audit.passed else EXIT_REFUSED
