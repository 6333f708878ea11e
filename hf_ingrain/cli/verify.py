"""`hf-ingrain verify`: does a model carry the watermark of a key? Exit 0 verified, 1 not verified, 2 error."""

import json
import logging
import os

from .audit import add_audit_data_arguments, audit_from_arguments
from .push import add_hub_verify_arguments

logger = logging.getLogger(__name__)

EXIT_VERIFIED, EXIT_NOT_VERIFIED = 0, 1


def add_parser(subparsers) -> None:
    from ..verification import DEFAULT_ALPHA, PROTOCOLS
    from ..verification.label_only import LADDERS

    parser = subparsers.add_parser(
        "verify",
        help="Test whether a model carries the watermark of a key (exit 0 present, 1 not, 2 error).",
        description=(
            "Queries MODEL on benign data (ingrain protocol) or on the key's carriers (carriers protocol) and tests "
            "the agreement against the null rate. Keys of the baseline schemes (Zhang, Adi, Uchida) are verified by "
            "their own test. Exit status: 0 the watermark is present (with --reference: the claim stands), 1 not (the "
            "claim is refused), 2 error."
        ),
    )
    parser.add_argument(
        "model", metavar="MODEL",
        help="The suspect: a local folder (saved with save_pretrained) or a Hub id (namespace/name).",
    )
    parser.add_argument("--key", required=True, metavar="DIR", help="Folder of the owner's key.")
    parser.add_argument(
        "--data",
        default="mnist-5k",
        metavar="NAME_OR_PATH",
        help="Benign queries for the ingrain protocol: mnist-5k (embedded, default), a save_to_disk folder, a csv / "
        "json / parquet file, a Hub id or a local folder. Raw images or texts go through the model folder's processor "
        "or tokenizer (or --processor's).",
    )
    parser.add_argument(
        "--processor", default=None, metavar="DIR",
        help="Folder of the image processor or tokenizer to apply to raw data (default: the model folder's own). For a "
        "Hub suspect, your own model's output folder: the queries are preprocessed as your model received them.",
    )
    parser.add_argument("--image-column", default=None, help="The raw image column (default: image, img).")
    parser.add_argument("--text-column", default=None, help="The raw text column (default: text, sentence, ...).")
    parser.add_argument("--label-column", default=None, help="The label column (default: labels, label).")
    parser.add_argument("--max-length", type=int, default=None, help="Text: padded length (default: 128).")
    parser.add_argument(
        "--split", default="test",
        help="Split of --data to query (default: test), or 'all' for every split: more queries, a more sensitive test.",
    )
    parser.add_argument(
        "--data-seed", type=int, default=0, help="Seed of the split assignment of --data (default: 0)."
    )
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default=None,
        help="Test to run (default: with --reference, the test committed at first publication, else ingrain). "
        "ingrain_labels and ingrain_errors read only the suspect's top label: for an endpoint that answers with "
        "labels alone.",
    )
    parser.add_argument(
        "--max-queries", type=int, default=None,
        help="Label-only protocols: the most queries sent to the suspect (each rung of the ladder counts).",
    )
    parser.add_argument(
        "--ladder", choices=LADDERS, default=None,
        help="ingrain_labels: how each input is degraded until the label changes (default: the committed test's "
        "with --reference, else occlusion).",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="Significance level: the largest accepted false-positive probability (default: the committed test's "
        f"with --reference, else {DEFAULT_ALPHA:g}).",
    )
    parser.add_argument("--top-k", type=int, default=None, help="Use only the K highest scores of each query.")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    parser.add_argument(
        "--reference", default=None, metavar="OWNER/REPO",
        help="For a Hub id: the owner's repository where the key's commitment was published. Makes this a claim: "
        "verified only if an RFC 3161 timestamp of the commitment (verified with --timestamp-ca) is older than the "
        "suspect's first publication, and the queries are the committed set.",
    )
    parser.add_argument("--reference-revision", default=None, help="Revision of --reference to read (default: main).")
    parser.add_argument(
        "--timestamp-ca", default=None, metavar="FILE",
        help="With --reference: PEM certificate of the time-stamping authority's CA you trust, to verify the "
        "commitment's timestamp (commitment.tsr in the reference). Hub commit dates alone establish nothing.",
    )
    add_audit_data_arguments(parser, prefix="audit-")  # --audit-data ...: a claim stands only on an audited key
    add_hub_verify_arguments(parser)
    parser.set_defaults(func=run)


def uses_raw_data(args, processor) -> bool:
    """Whether `--data` is read as users keep it and preprocessed by the model's processor (a save_to_disk folder, a
    data file, a processor to apply, or a column named), rather than by `hf_ingrain.data.load_image_dataset`."""
    from ..data import EMBEDDED_DATASET
    from ..data.preparation import is_saved_dataset

    if args.data == EMBEDDED_DATASET:  # the embedded digits: raw images when there is a processor to apply
        return processor is not None
    saved = is_saved_dataset(args.data)
    named = any(getattr(args, n) is not None for n in ("image_column", "text_column", "label_column", "max_length"))
    return saved or os.path.isfile(args.data) or processor is not None or named


def load_queries(name_or_path: str, split: str, seed: int = 0, raw: bool = False):
    """The benign queries: one split of an image data set (see `hf_ingrain.data.load_image_dataset`), or all; with
    `raw`, as 8-bit images for a processor."""
    from ..data import load_image_dataset

    splits = load_image_dataset(name_or_path, seed=seed, raw=raw)
    if split == "all":
        from datasets import concatenate_datasets

        return concatenate_datasets([splits[name] for name in sorted(splits)])
    if split not in splits:
        raise ValueError(f"No split {split!r} in {name_or_path!r}; choose one of {sorted(splits)} or 'all'.")
    return splits[split]


def run(args) -> int:
    from transformers.utils import logging as transformers_logging

    from ..data import EMBEDDED_DATASET
    from ..data.committed_test import INGRAIN_PROTOCOLS
    from ..data.preparation import check_model_modality, load_data, load_processor, prepare_dataset
    from ..hub import verify_from_hub
    from ..keys import WatermarkKey
    from ..suspects import is_hub_id, load_model
    from ..verification import DEFAULT_ALPHA, LABEL_PROTOCOLS, summary, verify
    from ..watermarks import load_key

    transformers_logging.disable_progress_bar()  # the summary (or the JSON) is the whole output

    if args.reference is None:  # a claim runs the committed test unless told otherwise (hf_ingrain.hub.verify_from_hub)
        args.protocol, args.ladder = args.protocol or "ingrain", args.ladder or "occlusion"
        args.alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    if args.alpha is not None and not 0 < args.alpha < 1:
        raise ValueError(f"--alpha must be in (0, 1), got {args.alpha}.")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}.")
    key = load_key(args.key)  # before any model or data: a wrong key folder fails fast
    hub = is_hub_id(args.model)
    if args.reference is not None and not hub:
        raise ValueError("--reference applies to a suspect on the Hub (its first commit is dated there); drop it.")
    if args.timestamp_ca is not None and args.reference is None:
        raise ValueError("--timestamp-ca verifies the timestamp of a claim: add --reference OWNER/REPO.")
    if args.audit_data is not None and args.reference is None:
        raise ValueError("--audit-data audits the key of a claim: add --reference OWNER/REPO (or run hf-ingrain audit-key).")
    # A local model is loaded once, now: a missing or unsafe folder fails before the data is loaded.
    model = None if hub else load_model(args.model, revision=args.revision, allow_pickle=args.allow_pickle)
    if model is not None and isinstance(key, WatermarkKey):
        check_model_modality(model, key)
    if args.max_queries is not None and args.max_queries < 1:
        raise ValueError(f"--max-queries must be >= 1, got {args.max_queries}.")
    uses_data = getattr(key, "ingrainer", None) is not None and args.protocol in INGRAIN_PROTOCOLS + (None,)
    processor = load_processor(args.processor or ("" if hub else args.model))
    if args.processor is not None and processor is None:
        raise ValueError(f"--processor {args.processor}: no image processor or tokenizer files there.")
    columns = {}
    if uses_data and uses_raw_data(args, processor):
        if args.data == EMBEDDED_DATASET:
            dataset = load_queries(args.data, args.split, args.data_seed, raw=True)
        else:
            dataset = load_data(args.data, args.split)
        columns = dict(processor=processor, image_column=args.image_column, text_column=args.text_column,
                       label_column=args.label_column, max_length=args.max_length)
        if processor is not None or not hub:  # a Hub suspect's own processor comes with its files, at one commit
            prepare_dataset(dataset, key, **columns)  # refuses the wrong modality or a missing processor now
    else:
        dataset = load_queries(args.data, args.split, args.data_seed) if uses_data else None
    options = dict(protocol=args.protocol, alpha=args.alpha, top_k=args.top_k, **columns)
    if args.protocol in LABEL_PROTOCOLS + (None,):
        options.update({name: value for name, value in (("max_queries", args.max_queries), ("ladder", args.ladder))
                        if value is not None})
    key_audit = None
    if args.reference is not None and isinstance(key, WatermarkKey):  # a claim audits the key, before any query
        key_audit = audit_from_arguments(key, args.audit_data, args.audit_split, args.audit_seed, args.audit_references,
                                         processor if args.processor else None)
    if hub:
        result = verify_from_hub(
            args.model, key, dataset, revision=args.revision, allow_pickle=args.allow_pickle,
            reference_repo_id=args.reference, reference_revision=args.reference_revision,
            timestamp_ca=args.timestamp_ca, key_audit=key_audit, **options,
        )
    else:
        result = verify(model, key, dataset, **options)
    report = {
        "model": args.model,
        **({"revision": args.revision} if hub else {}),
        "key_commitment": key.commitment(),
        "data": {"name": args.data, "split": args.split, "seed": args.data_seed} if uses_data else None,
        **result.to_dict(),
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(summary(report))  # the one printout of a result (hf_ingrain.verification.summary)
    return EXIT_VERIFIED if result.verified else EXIT_NOT_VERIFIED
