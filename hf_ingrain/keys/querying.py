"""Querying a key's ingrainers: every member on the same queries in one pass over them (stacked on a GPU, on worker
threads on a CPU), and the scores of the last query sets kept with the key for the next verification."""

import torch

from ..data import iterate_batches
from ..suspects import model_input_names, model_inputs
from .batched import can_batch, member_logits, run_members, stack_parameters, stacked_logits, stacks_on

SCORES_MEMO_BYTES = 512 * 1024**2  # the largest set of ingrainer scores `remembered_scores` keeps for the next call
MEMO_ATTRIBUTE = "_scores_memo"  # where a key keeps them (in memory only: never saved)


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
    memo_key = (query_digest, _weights_token([key.ingrainer, *key.reference_ingrainers]))
    if memo_key in memo:
        first, *rest = [member.clone() for member in memo[memo_key]]
        return first, rest
    first, rest = key.ingrainer_scores(queries, batch_size)
    if sum(member.numel() for member in [first, *rest]) * 4 <= SCORES_MEMO_BYTES:
        memo[memo_key] = [member.clone() for member in [first, *rest]]
        while len(memo) > 2:
            memo.pop(next(iter(memo)))
    return first, rest


def forget_scores(key) -> None:
    """Drops the ingrainer scores [`remembered_scores`] keeps with `key` (the next verification queries it again)."""
    key.__dict__.pop(MEMO_ATTRIBUTE, None)


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
