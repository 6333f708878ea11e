"""Querying a key's ingrainers: every member on the same queries in one pass over them (stacked on a GPU, on worker
threads on a CPU), the scores of the last query sets kept with the key for the next verification, and the scores of
the key's committed queries saved with it.

The committed queries are the ones every later verification of a claim runs on, so [`WatermarkKey.commit_queries`]
queries the key's ingrainers on them once and the key's folder keeps their answers (`committed_scores.safetensors`,
with the digest of the weights that gave them): verifying on them in a later session then queries no ingrainer, and a
key with 64 references verifies about as fast as one with none. The file is derived from the key, not part of it: it is
not in the commitment, it is used only while the ingrainers' weights are those it records, and a claim never reads it
(`hf_ingrain.hub.verify_from_hub` with `reference_repo_id=` queries the audited ingrainers again): anyone can write
a key folder by hand, this file included.
"""

import logging
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..data import iterate_batches
from ..hashing import tensors_sha256
from ..suspects import model_input_names, model_inputs
from .batched import can_batch, member_logits, run_members, stack_parameters, stacked_logits, stacks_on

SCORES_MEMO_BYTES = 512 * 1024**2  # the largest set of ingrainer scores `remembered_scores` keeps for the next call
MEMO_ATTRIBUTE = "_scores_memo"  # where a key keeps them (in memory only: never saved)
SAVED_ATTRIBUTE = "_committed_scores"  # the committed queries' scores, saved with the key
SCORES_FILE = "committed_scores.safetensors"

logger = logging.getLogger(__name__)


def _fits_in_memory(num_scores: int) -> bool:
    """Whether `num_scores` float32 scores stay within `SCORES_MEMO_BYTES`, the most a key keeps (memo or saved)."""
    return num_scores * 4 <= SCORES_MEMO_BYTES


def _weights_token(models: list) -> tuple:
    """What identifies the models' current weights, cheaply: each tensor's storage, its in-place version counter and its
    sum (which catches a change made through `.data`, which the counter misses)."""
    with torch.no_grad():
        return tuple((tensor.data_ptr(), tensor._version, float(tensor.double().sum()))
                     for model in models for tensor in [*model.parameters(), *model.buffers()])


def remembered_scores(key, queries, batch_size: int, query_digest: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`key.ingrainer_scores(queries)`, kept with the key for the last two query sets (`query_digest`: the ordered
    digest of what `queries` holds, `hf_ingrain.data.QuerySet.ordered_digest`) and given again while the ingrainers'
    weights are those they were computed with (checked at each call): verifying many suspects on the same queries then
    queries the key's ingrainers once."""
    if key.ingrainer is None:
        return key.ingrainer_scores(queries, batch_size)  # which says what is missing
    memo = key.__dict__.setdefault(MEMO_ATTRIBUTE, {})
    members = [key.ingrainer, *key.reference_ingrainers]
    memo_key = (query_digest, _weights_token(members))
    if memo_key in memo:
        first, *rest = [member.clone() for member in memo[memo_key]]
        return first, rest
    saved = key.__dict__.get(SAVED_ATTRIBUTE)
    if (saved and saved["query_digest"] == query_digest and len(saved["scores"]) == len(members)
            and saved["weights_digest"] == _weights_digest(members)):
        first, *rest = list(saved["scores"].clone())
    else:
        first, rest = key.ingrainer_scores(queries, batch_size)
    if _fits_in_memory(sum(member.numel() for member in [first, *rest])):
        memo[memo_key] = [member.clone() for member in [first, *rest]]
        while len(memo) > 2:
            memo.pop(next(iter(memo)))
    return first, rest


def forget_scores(key, saved: bool = True) -> None:
    """Drops the ingrainer scores [`remembered_scores`] keeps with `key`, and with `saved` those of its committed
    queries (read from its folder or computed at commit): the next verification queries its ingrainers again."""
    key.__dict__.pop(MEMO_ATTRIBUTE, None)
    if saved:
        key.__dict__.pop(SAVED_ATTRIBUTE, None)


def _weights_digest(models: list) -> str:
    """SHA-256 of every member's weights, in order: what ties saved scores to the ingrainers that gave them."""
    return tensors_sha256({f"{index}.{name}": tensor for index, model in enumerate(models)
                           for name, tensor in model.state_dict().items()})


def keep_committed_scores(key, query_set, queries, batch_size: int = 256) -> None:
    """Queries `key`'s ingrainers on its committed `queries` (deduplicated as `query_set` reads them) and keeps the
    scores with the key, to be saved in its folder (see the module docstring); a key with no ingrainer yet keeps none."""
    key.__dict__.pop(SAVED_ATTRIBUTE, None)
    if key.ingrainer is None:
        return
    first, rest = remembered_scores(key, query_set.deduplicated(queries), batch_size, query_set.ordered_digest)
    scores = torch.stack([first, *rest])
    if _fits_in_memory(scores.numel()):
        key.__dict__[SAVED_ATTRIBUTE] = {"query_digest": query_set.ordered_digest, "scores": scores,
                                         "weights_digest": _weights_digest([key.ingrainer, *key.reference_ingrainers])}


def save_committed_scores(key, folder: str) -> None:
    """Writes the committed queries' scores `key` keeps (if any) into its folder `folder`."""
    saved = key.__dict__.get(SAVED_ATTRIBUTE)
    if saved:
        metadata = {"query_digest": saved["query_digest"], "weights_digest": saved["weights_digest"]}
        save_file({"scores": saved["scores"].contiguous()}, os.path.join(folder, SCORES_FILE), metadata=metadata)


def load_committed_scores(key, folder: str) -> None:
    """Reads the committed queries' scores saved in the key folder `folder`, if any (an unreadable file is ignored,
    with a warning: the scores are computed again when needed)."""
    path = os.path.join(folder, SCORES_FILE)
    if not os.path.isfile(path):
        return
    try:
        with safe_open(path, framework="pt") as f:
            metadata, scores = f.metadata() or {}, f.get_tensor("scores").float()
        key.__dict__[SAVED_ATTRIBUTE] = {"query_digest": metadata["query_digest"], "scores": scores,
                                         "weights_digest": metadata["weights_digest"]}
    except Exception as error:  # derived data: never a reason to refuse the key
        logger.warning("Ignoring %s (%s): the ingrainers will be queried again.", path, error)


def _member_answers(model, inputs: dict) -> torch.Tensor:
    with torch.no_grad():  # grad mode is per thread: a worker thread's must be set here
        return member_logits(model, inputs).float().cpu()


@torch.no_grad()
def query_ingrainers(models: list, queries, batch_size: int = 256) -> list[torch.Tensor]:
    """The logits `(n, K)` of each of a key's ingrainers on `queries` (a data set, read in order), in one pass over the
    queries: each batch is read once and every ingrainer answers it, stacked on a GPU (one forward pass for all of
    them, see `hf_ingrain.keys.batched`), on a CPU each member on one thread, the members shared out to
    `torch.get_num_threads()` worker threads (so the logits do not depend on the number of threads); no model is
    copied."""
    if not models:
        return []
    for model in models:
        model.eval()
    names = model_input_names(models[0])
    device = next(iter([*models[0].parameters(), *models[0].buffers()]), torch.empty(0)).device
    stacked = len(models) > 1 and stacks_on(device) and can_batch(models)
    params = stack_parameters(models, device) if stacked else None
    scores = [[] for _ in models]
    for batch in iterate_batches(queries, batch_size, columns=names):
        inputs = model_inputs(models[0], batch, names)
        if stacked:
            logits = stacked_logits(models[0], params, inputs, shared=True).float().cpu()
        else:
            logits = run_members(lambda model: _member_answers(model, inputs), models)
        for index, member in enumerate(logits):
            if not torch.isfinite(member).all():
                raise ValueError(
                    f"Ingrainer {index} of the key returned NaN or infinite logits on {len(member)} queries: its "
                    "weights are broken (the key folder was changed or damaged)."
                )
            scores[index].append(member)
    if not scores[0]:
        raise ValueError("The verification data set is empty.")
    return [torch.cat(member) for member in scores]
