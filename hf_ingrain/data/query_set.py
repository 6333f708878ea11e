r"""
The benign queries of a verification, as a set the owner can commit to before any suspect is seen.

A p-value is only as good as the queries behind it. An owner who picks, after seeing a suspect, the inputs on which
it happens to agree with the key can make any model "verify"; a query set that repeats an input counts one piece of
evidence twice, and so does one that adds a near copy of an input. So:

- [`read_queries`] reads the queries once before any is sent: it refuses inputs the key was not made for and labels
  outside its classes, finds duplicate examples, and computes the set's **digest**: a SHA-256 over the sorted hashes
  of the distinct examples (their model inputs), independent of order and of repetitions; and its **ordered
  digest**, over the same hashes in the order of the queries (first occurrences).
- It also drops **near-duplicates** (see `hf_ingrain.data.near_duplicates`): an image within 5/255 of one kept before
  it (block averages, root mean square), a text with the same tokens under its attention mask or the same normalised
  raw text. The digests still cover every distinct example, as before: the near-duplicate rule is a fixed function of
  them and their order, so the committed set fixes which queries count. A collision between genuinely different
  inputs only drops a query (less evidence, never a false verdict).
- [`WatermarkKey.commit_queries`](`hf_ingrain.WatermarkKey.commit_queries`) records both in the key (covered by its
  commitment), and `push_to_hub` records them in the model card: the committed set. [`verify`] drops duplicates
  before counting, reports the digest of the queries it used, and whether they are the committed set.
- A query budget (the label-only protocols' `max_queries`) sends a prefix of the queries. The set alone does not fix
  which prefix: an owner who has seen the suspect's answers could put first the inputs where it agrees with the key,
  and a model not derived from the key could then verify on "the committed set". So a test that used a prefix is on
  the committed queries only when their order is the committed one (the ordered digest matches); a commitment
  without an order (made before it was recorded, or a digest string) does not cover a budgeted test.
- [`~hf_ingrain.verification.hardest_first`] orders the queries before they are committed: the images a key-free
  model of the owner finds hardest first, where the label-only routes find their evidence. The order depends on no
  suspect, and the ordered digest fixes it.
"""

import hashlib
from dataclasses import dataclass, field

import torch

from .images import iterate_batches
from .near_duplicates import TEXT_COLUMNS, NearDuplicates

DIGEST_DOMAIN = b"hf_ingrain-queries-v1\0"
ORDERED_DIGEST_DOMAIN = b"hf_ingrain-ordered-queries-v1\0"
HASHED_COLUMNS = ("pixel_values", "input_ids", "attention_mask", "input_values", "input_features")
IN_MEMORY_BYTES = 2 * 1024**3  # queries up to this size are kept in memory: every model then reads them at no cost


class TensorQueries:
    """Queries held in memory as tensors, read like a `datasets.Dataset` by `iterate_batches` (no Arrow conversion:
    a verification queries the suspect, the ingrainer and every reference ingrainer on the same rows)."""

    format = {"type": "torch"}

    def __init__(self, tensors: dict):
        self.tensors = tensors

    @property
    def column_names(self) -> list[str]:
        return list(self.tensors)

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index):
        return {name: value[index] for name, value in self.tensors.items()}

    def select_columns(self, columns) -> "TensorQueries":
        return TensorQueries({name: self.tensors[name] for name in columns})

    def select(self, indices) -> "TensorQueries":
        """The rows at `indices`, in that order (as `datasets.Dataset.select`)."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return TensorQueries({name: value[index] for name, value in self.tensors.items()})

    def iter(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            yield {name: value[start : start + batch_size] for name, value in self.tensors.items()}


@dataclass
class QuerySet:
    r"""
    What [`read_queries`] found in a set of benign queries.

    Args:
        digest (`str`): SHA-256 of the distinct examples (order and repetitions do not change it).
        num_examples (`int`): rows read.
        unique_indices (`list[int]`): the rows counted, in order: the first row of each distinct example that is not a
            near-duplicate of an earlier one.
        ordered_digest (`str`): SHA-256 of the distinct examples in order (repetitions do not change it).
        num_near_duplicates (`int`): distinct examples dropped as near-duplicates of one counted before them.
    """

    digest: str
    num_examples: int
    unique_indices: list = field(default_factory=list)
    ordered_digest: str | None = None
    num_near_duplicates: int = 0
    tensors: dict | None = field(default=None, repr=False)  # the distinct queries, when they fit in memory

    def commitment(self) -> dict:
        """What a key and a model card record of this set: `{"digest", "ordered_digest", "num_queries"}`."""
        return {"digest": self.digest, "ordered_digest": self.ordered_digest, "num_queries": len(self.unique_indices)}

    @property
    def num_duplicates(self) -> int:
        """Rows that repeat an earlier example exactly."""
        return self.num_examples - len(self.unique_indices) - self.num_near_duplicates

    def deduplicated(self, dataset):
        """`dataset` without its repeated rows: in memory when they fit (see `IN_MEMORY_BYTES`), else `dataset` itself
        or a selection of it."""
        if self.tensors is not None:
            return TensorQueries(self.tensors)
        if len(self.unique_indices) == self.num_examples:
            return dataset
        if not hasattr(dataset, "select"):
            raise ValueError(
                f"The queries repeat {self.num_duplicates} examples and hold {self.num_near_duplicates} near-duplicates, "
                "and this data set cannot drop rows (a stream): remove them first; a repeated query would count the "
                "same evidence twice."
            )
        selected = dataset.select(self.unique_indices)
        # read through an index mapping, datasets converts row by row: materialise the selection once
        return selected.flatten_indices() if hasattr(selected, "flatten_indices") else selected


def _example_hashes(batch: dict, columns: list[str]) -> list[bytes]:
    size = len(batch[columns[0]])
    hashes = []
    for index in range(size):
        digest = hashlib.sha256()
        for column in columns:
            value = batch[column][index].detach().cpu().contiguous()
            digest.update(f"{column}:{value.dtype}:{tuple(value.shape)}\0".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
        hashes.append(digest.digest())
    return hashes


def read_queries(key, dataset, batch_size: int = 4096) -> QuerySet:
    r"""
    Reads benign queries once, before any is sent to a suspect: refuses inputs the key was not made for (shape, value
    range, vocabulary) and labels outside its classes, finds duplicates and near-duplicates (see
    `hf_ingrain.data.near_duplicates`), and computes the set's digest (of the distinct examples, near-duplicates
    included: the digests are those of every set committed before near-duplicates were dropped).

    Args:
        key ([`WatermarkKey`]): the owner's key.
        dataset: the queries, with the key's input column (`pixel_values` or `input_ids`) and optionally `labels`.
        batch_size (`int`, *optional*, defaults to 4096): rows per read.

    Returns:
        [`QuerySet`]
    """
    seen, unique, hashes_in_order = set(), [], []
    count, kept, kept_bytes, near_duplicates = 0, [], 0, NearDuplicates(key)
    columns = list(dict.fromkeys([key.input_name, "labels", *HASHED_COLUMNS, *TEXT_COLUMNS]))
    for batch in iterate_batches(dataset, batch_size, columns=columns):
        if key.input_name not in batch:
            raise ValueError(
                f"The verification data has no `{key.input_name}` column, which the key's ingrainer reads: pass the "
                "data as the model receives it."
            )
        key.check_inputs(batch[key.input_name], "The verification data")
        labels = batch.get("labels")
        if labels is not None and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= key.num_labels):
            raise ValueError(
                f"The verification data has labels from {int(labels.min())} to {int(labels.max())}, outside the key's "
                f"{key.num_labels} classes: use the task's labels (0 to {key.num_labels - 1}), or drop the column."
            )
        hashed = sorted(column for column in HASHED_COLUMNS if column in batch)
        first = count
        for row_hash in _example_hashes(batch, hashed):
            if row_hash not in seen:
                seen.add(row_hash)
                unique.append(count)
                hashes_in_order.append(row_hash)
            count += 1
        rows = torch.tensor([index - first for index in unique if index >= first], dtype=torch.long)
        near_duplicates.add(batch, rows.tolist())
        if kept is not None:
            kept.append({name: value[rows] for name, value in batch.items() if torch.is_tensor(value)})
            kept_bytes += sum(value.numel() * value.element_size() for value in kept[-1].values())
            if kept_bytes > IN_MEMORY_BYTES:
                kept = None  # too large: later passes read the data set again
    if not count:
        raise ValueError("The verification data set is empty.")
    digest = hashlib.sha256(DIGEST_DOMAIN + b"".join(sorted(hashes_in_order))).hexdigest()
    ordered_digest = hashlib.sha256(ORDERED_DIGEST_DOMAIN + b"".join(hashes_in_order)).hexdigest()
    dropped = near_duplicates.dropped()  # positions among the distinct examples
    counted = torch.ones(len(unique), dtype=torch.bool)
    counted[dropped] = False
    tensors = None
    if kept:
        tensors = {name: torch.cat([part[name] for part in kept])[counted] for name in kept[0]}
    return QuerySet(
        digest=digest, num_examples=count, unique_indices=[index for index, c in zip(unique, counted.tolist()) if c],
        ordered_digest=ordered_digest, num_near_duplicates=len(dropped), tensors=tensors,
    )


def committed_set(committed, key) -> dict:
    """The committed query set a verification compares with: `committed` (a digest string, or a model card's
    `queries` block with `digest` and `ordered_digest`), else the one the key commits to (`{}` when none)."""
    if committed is None:
        return dict(key.committed_queries or {})
    return dict(committed) if isinstance(committed, dict) else {"digest": committed}


def is_committed(query_set: QuerySet, committed: dict, num_used: int | None = None) -> bool | None:
    """Whether the queries are the committed set (`None` when none was committed); when only the first `num_used`
    distinct queries were sent (a budget), also in the committed order, which fixes that prefix."""
    if not committed.get("digest"):
        return None
    if committed["digest"] != query_set.digest:
        return False
    if num_used is not None and num_used < len(query_set.unique_indices):
        return committed.get("ordered_digest") is not None and committed["ordered_digest"] == query_set.ordered_digest
    return True
