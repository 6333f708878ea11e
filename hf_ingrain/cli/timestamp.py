"""`hf-ingrain timestamp`: an RFC 3161 timestamp of a key's commitment, from a time-stamping authority (TSA).

Only the SHA-256 of the commitment (itself a hash of the key) is sent to the TSA. Do it when publishing, before
`hf-ingrain push ... --timestamp FILE`: the token's time is the date a third party can check, and a claim stands only
against a suspect first published after it.
"""

import os


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "timestamp",
        help="Timestamp a key's commitment at an RFC 3161 TSA (publish the token with `push --timestamp`).",
        description=__doc__.splitlines()[0] + " The token reveals nothing of the key; publish it next to the card.",
    )
    parser.add_argument("--key", required=True, metavar="DIR", help="Folder of the owner's key (WatermarkKey.save).")
    parser.add_argument(
        "--tsa", required=True, metavar="URL",
        help="The TSA's URL (an HTTP POST of application/timestamp-query), e.g. https://freetsa.org/tsr.",
    )
    parser.add_argument("--output", required=True, metavar="FILE", help="Where to write the token (e.g. commitment.tsr).")
    parser.add_argument(
        "--ca", default=None, metavar="FILE",
        help="PEM certificate of the TSA's CA: verify the token right away, as a claim's verifier will.",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds to wait for the TSA (default: 30).")
    parser.set_defaults(func=_timestamp_from_cli)


def _timestamp_from_cli(args) -> int:
    from transformers.utils import logging as transformers_logging

    from ..files import atomic_file
    from ..hub.timestamps import read_timestamp, request_timestamp, verify_timestamp
    from ..keys import WatermarkKey

    transformers_logging.disable_progress_bar()  # loading the key's ingrainer; the lines below are the output
    if os.path.exists(args.output):
        raise ValueError(
            f"{args.output} already exists: keep the earlier token (its time is the one that counts) and choose "
            "another --output."
        )
    commitment = WatermarkKey.load(args.key).commitment()
    token = request_timestamp(commitment, args.tsa, timeout=args.timeout)
    info = verify_timestamp(token, commitment, args.ca) if args.ca else read_timestamp(token)
    with atomic_file(args.output) as temporary, open(temporary, "wb") as f:
        f.write(token)
    checked = f", verified against {args.ca}" if args.ca else " (not verified: pass --ca to check it now)"
    print(f"Timestamped the commitment {commitment} by {info.tsa} at {info.time.isoformat()}{checked}.")
    print(f"Token written to {args.output}. Publish it with the model: "
          f"hf-ingrain push MODEL_DIR REPO_ID --key {args.key} --timestamp {args.output}")
    return 0
