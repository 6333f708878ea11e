"""`hf-ingrain push`: publish a watermarked model folder to the Hub with its watermark card, in one commit.

The verification side, `hf-ingrain verify REPO_ID --revision REV`, lives in the verify command, which adds the Hub
options of [`add_hub_verify_arguments`].
"""

import os

from ..verification import DEFAULT_ALPHA


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "push",
        help="Publish a watermarked model to the Hub with a model card carrying the key's commitment.",
        description=(
            "Verifies MODEL_DIR with the key on benign data, then uploads config.json, safetensors weights, the "
            "preprocessing files, a model card (README.md) and watermark.json to REPO_ID in one commit, and prints "
            "the commit sha. The key stays local: only its commitment is published. The token comes from HF_TOKEN or "
            "`hf auth login`."
        ),
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="Folder written by save_pretrained or a Trainer.")
    parser.add_argument("repo_id", metavar="REPO_ID", help="Hub repository, namespace/name (created if missing).")
    parser.add_argument("--key", required=True, help="Folder of the owner's key (WatermarkKey.save).")
    parser.add_argument(
        "--data", default="mnist-5k", help="Benign data for the recorded verification: mnist-5k (embedded), a Hub id "
        "or a local folder (default: mnist-5k).",
    )
    parser.add_argument("--split", default="test", help="Split of --data to query (default: test).")
    parser.add_argument("--private", action="store_true", help="Create the repository as private.")
    parser.add_argument("--revision", default=None, help="Existing branch to commit to (default: main).")
    parser.add_argument("--commit-message", default=None, help="Commit message.")
    parser.add_argument(
        "--ingrain-lambda", type=float, default=None, help="ingrain_lambda used in training (recorded)."
    )
    parser.add_argument(
        "--ingrain-temperature", type=float, default=None, help="ingrain_temperature used in training (recorded)."
    )
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="Significance level (default: 1e-6).")
    parser.add_argument(
        "--timestamp", default=None, metavar="FILE",
        help="The RFC 3161 timestamp of the key's commitment (from `hf-ingrain timestamp`), uploaded as "
        "commitment.tsr and named in the card: the date a claim of ownership stands on.",
    )
    parser.set_defaults(func=_push_from_cli)


def add_hub_verify_arguments(parser) -> None:
    """Adds `--revision` and `--allow-unsafe-pickle` to a verify parser (see [`hf_ingrain.hub.verify_from_hub`])."""
    parser.add_argument("--revision", default=None, help="For a Hub id: branch, tag or commit sha (default: main).")
    parser.add_argument(
        "--allow-unsafe-pickle", dest="allow_pickle", action="store_true",
        help="With pickle weights only: load them anyway. UNSAFE: a pickle can run code.",
    )


def _push_from_cli(args) -> int:
    from ..data import load_image_dataset, load_processor, prepare_dataset
    from ..hub import push_to_hub
    from ..keys import WatermarkKey
    from ..suspects import is_hub_id

    if not os.path.isdir(args.model_dir):
        raise ValueError(
            f"No model folder at {args.model_dir!r}: give a folder written by save_pretrained or a Trainer."
        )
    if not is_hub_id(args.repo_id):
        raise ValueError(f"{args.repo_id!r} is not a Hub repository id: write it as namespace/name.")
    key = WatermarkKey.load(args.key)
    processor = load_processor(args.model_dir)  # the folder's own: the queries as the model receives them
    splits = load_image_dataset(args.data, raw=processor is not None)
    if args.split not in splits:
        raise ValueError(f"--split {args.split!r} is not a split of {args.data!r}; choose one of {sorted(splits)}.")
    queries = splits[args.split] if processor is None else prepare_dataset(splits[args.split], key, processor)
    sha = push_to_hub(
        args.model_dir, args.repo_id, key, verification_dataset=queries, private=args.private,
        revision=args.revision,
        commit_message=args.commit_message, ingrain_lambda=args.ingrain_lambda,
        ingrain_temperature=args.ingrain_temperature, alpha=args.alpha, timestamp=args.timestamp,
    )
    print(f"Published {args.model_dir} to {args.repo_id} at commit {sha}")
    data = "" if args.data == "mnist-5k" else f" --data {args.data}"
    print(f"Verify it with: hf-ingrain verify {args.repo_id} --key {args.key} --revision {sha}{data}")
    if args.timestamp is None:
        print("Not timestamped: the commitment is dated only by this commit, which cannot back a claim of ownership. "
              "Next time, first run `hf-ingrain timestamp --key KEY --tsa URL --output commitment.tsr` and push with "
              "--timestamp commitment.tsr.")
    return 0
