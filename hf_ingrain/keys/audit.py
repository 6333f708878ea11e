r"""
A key anyone can check: every ingrainer of a [`WatermarkKey`] (its own and each reference) is a deterministic function of
its seed, the recipe the key records and the benign data, so a third party holding the key and that data trains them
again and compares them with what the key holds, bit for bit on a CPU.

That is what stands against a key folder written by hand: an `ingrainer/` that is an ordinary classifier fitted to the
key's carriers makes independent models "verify" (they share a classifier's natural confusions), and a reference
replaced or duplicated bends the key-draw test; both load, and neither is what the seed and the recipe give. An audit
checks, before any long work: that the carriers and their labels are the ones the key's seed draws, that the benign data
is the data the key was trained on (its digest, recorded at training), that the references are distinct and as many as
recorded; then it re-trains the ingrainer and every reference (or a sample of the references drawn from the operating
system's randomness when the audit runs, after the claim is made) and compares them. A claim of ownership
(`hf_ingrain.hub.verify_from_hub(..., reference_repo_id=..., key_audit=...)`) stands only on an audited key.

The rule that derives the seeds: the ingrainer's initialisation and batches use `subseed(key.seed, "init")` and
`subseed(key.seed, "batches")`, and reference `i` is the key `WatermarkKey.generate(..., seed=subseed(key.seed,
f"reference:{i}"))` trained by the same recipe (`hf_ingrain.keys.ingrainer.subseed`: SHA-256 of `"{seed}:{use}"`).
"""

import copy
import logging
import random
from dataclasses import dataclass, field

import torch

from ..data.preparation import prepare_dataset
from ..hashing import tensors_sha256
from .ingrainer import benign_tensors, fit_ingrainers, reference_keys
from .inputs import benign_digest
from .querying import forget_scores

logger = logging.getLogger(__name__)


def _options(key, benign_inputs, benign_labels) -> tuple:
    """The training options of `key`'s members, from the recipe its `training_info` records (keys saved before the
    recipe was recorded were trained with the defaults of [`WatermarkKey.train_ingrainer`], which are then used)."""
    info = key.training_info or {}
    recipe = {"learning_rate": 1e-3, "spread_weight": 1.0, "sharpness_weight": 0.3, "logit_std": 2.0,
              "batch_size": 256, "architecture": "default", **info.get("recipe", {})}
    # a config-made ingrainer: the saved ingrainer's own configuration is the architecture it was made from
    architecture = None if recipe["architecture"] == "default" else copy.deepcopy(key.ingrainer.config)
    return (architecture, benign_inputs, benign_labels, info.get("num_steps", 600), recipe["learning_rate"],
            recipe["spread_weight"], recipe["sharpness_weight"], recipe["logit_std"], recipe["batch_size"])


def rederive_ingrainer(key, benign_dataset=None, reference: int | None = None, processor=None, device="cpu"):
    r"""
    Trains `key`'s ingrainer (or its reference ingrainer number `reference`) again, alone, from the key's seed and the
    recipe its `training_info` records, on `benign_dataset` (the data the key was trained on): on a CPU the result
    equals the saved ingrainer bit for bit, which anyone holding the key and the data can check ([`audit_key`] does).

    Refused before any training: a key trained on benign data without that data, or with other data (its digest is not
    the one the key records).

    Returns:
        The re-derived ingrainer (frozen, on the CPU).
    """
    info = key.training_info or {}
    if reference is not None and not 0 <= reference < info.get("num_reference_keys", len(key.reference_ingrainers)):
        raise ValueError(f"The key has no reference ingrainer {reference}.")
    benign = _training_benign(key, benign_dataset, processor, " to re-derive its ingrainers.")
    member = key if reference is None else reference_keys(key, reference + 1)[reference]
    return fit_ingrainers([member], _options(key, *benign), device=device)[0][0]


@dataclass
class KeyAudit:
    r"""
    What [`audit_key`] found.

    Args:
        passed (`bool`): every check held and every re-trained ingrainer equals the key's.
        commitment (`str`): the commitment of the key audited.
        checked (`list[str]`): the members re-trained and found equal (`"ingrainer"`, `"reference 3"`, ...).
        num_references (`int`): the key's reference ingrainers.
        refusals (`list[str]`): why the key does not pass, each naming what differs.
        notes (`list[str]`): what the audit could not check, and why (a key saved before its data was recorded).
    """

    passed: bool
    commitment: str
    checked: list = field(default_factory=list)
    num_references: int = 0
    refusals: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def __str__(self) -> str:
        head = (f"KEY AUDITED: {len(self.checked)} ingrainers re-derived from the key's seed, each equal to the key's"
                if self.passed else "KEY REFUSED: " + "; ".join(self.refusals))
        return "\n".join([head, f"  key           commitment {self.commitment}"] + [f"  note          {n}" for n in self.notes])


def _same(a, b) -> bool:
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k].cpu(), state_b[k].cpu()) for k in state_a)


DIFFERENT_DATA = ("the benign data given is not the data the key was trained on (its digest differs from the one the "
                  "key records): pass the owner's training data, as the key read it")


def _read_benign(key, benign_dataset, processor, purpose: str) -> tuple:
    """The benign inputs and labels the key's members train on, read from `benign_dataset` as `train_ingrainer` read
    them, and whether their digest is the one the key records (`None` when it records none). A key trained on benign
    data refuses to go on without it (`purpose` ends the message)."""
    recorded = (key.training_info or {}).get("benign_digest")
    if recorded is not None and benign_dataset is None:
        raise ValueError("The key was trained on benign data: pass it as `benign_dataset=` (the owner's training data, "
                         f"as the key read it){purpose}")
    if benign_dataset is not None:
        benign_dataset = prepare_dataset(benign_dataset, key, processor)
    benign = benign_tensors(key, benign_dataset)
    return benign, None if recorded is None else benign_digest(*benign) == recorded


def _training_benign(key, benign_dataset, processor, purpose: str) -> tuple:
    """What `_read_benign` reads, for training a member of the key: other data than the key's would train another
    model, so it is refused (the audit, which reports rather than refuses, reads `_read_benign` itself)."""
    benign, same_data = _read_benign(key, benign_dataset, processor, purpose)
    if same_data is False:
        raise ValueError(f"{DIFFERENT_DATA[0].upper()}{DIFFERENT_DATA[1:]}.")
    return benign


def _static_refusals(key, benign_dataset, processor) -> tuple:
    """The checks that cost no training: carriers from the seed, the data's digest, distinct references."""
    refusals, notes = [], []
    drawn = type(key).generate(
        key.num_labels, key.input_shape, len(key.carriers), seed=key.seed, value_range=key.value_range,
        vocab_size=key.vocab_size, sequence_length=key.carriers.shape[1] if key.modality == "text" else 32,
        preprocessing=key.preprocessing,
    )
    if not (torch.equal(drawn.carriers, key.carriers) and torch.equal(drawn.carrier_labels, key.carrier_labels)):
        refusals.append("its carriers or their labels are not the ones its seed draws")
    info = key.training_info or {}
    benign, same_data = _read_benign(key, benign_dataset, processor, " to audit the key.")
    if same_data is False:
        refusals.append(DIFFERENT_DATA)
    elif same_data is None and "benign_digest" not in info:
        notes.append("the key records no digest of its benign data (saved before 0.2): the re-training itself shows "
                     "whether the data is the same")
    versions = info.get("versions")
    if versions and versions.get("torch") != torch.__version__:
        notes.append(f"trained with torch {versions.get('torch')}, audited with {torch.__version__}: a re-derivation "
                     "is bit for bit under the same versions; a difference may be rounding")
    digests = [tensors_sha256(model.state_dict()) for model in [key.ingrainer, *key.reference_ingrainers]]
    if len(set(digests)) < len(digests):
        refusals.append("two of its ingrainers are the same model: each must be its own seed's")
    expected = info.get("num_reference_keys")
    if expected is not None and expected != len(key.reference_ingrainers):
        refusals.append(f"it records {expected} reference ingrainers but holds {len(key.reference_ingrainers)}")
    return refusals, notes, benign


def audit_key(key, benign_dataset=None, num_references: int | None = None, processor=None, seed: int | None = None):
    r"""
    Checks that `key` is what its seed, its recipe and its benign data give (see the module docstring): the checks
    that cost nothing first, then the ingrainer and the references re-trained on the CPU and compared bit for bit.

    Args:
        key ([`WatermarkKey`]): the key to audit (its folder may have been written by anyone).
        benign_dataset (`datasets.Dataset`, *optional*): the data the key was trained on (required if it was).
        num_references (`int`, *optional*): how many references to re-train, drawn at random when the audit runs
            (default: every one; the ingrainer itself is always re-trained).
        processor (*optional*): the image processor or tokenizer, for raw data (as for `train_ingrainer`).
        seed (`int`, *optional*): seed of the sample of references (default: the operating system's randomness:
            drawn after the claim, so a forger cannot know which references will be checked).

    Returns:
        [`KeyAudit`]
    """
    if key.ingrainer is None:
        raise ValueError("The key has no trained ingrainer: there is nothing to audit.")
    audit = KeyAudit(passed=False, commitment=key.commitment(), num_references=len(key.reference_ingrainers))
    audit.refusals, audit.notes, benign = _static_refusals(key, benign_dataset, processor)
    if audit.refusals:
        return audit
    indices = list(range(len(key.reference_ingrainers)))
    if num_references is not None and num_references < len(indices):
        indices = sorted(random.Random(seed if seed is not None else random.SystemRandom().random()).sample(
            indices, max(num_references, 0)))
    members = [("ingrainer", key, key.ingrainer)]
    references = reference_keys(key, len(key.reference_ingrainers))
    members += [(f"reference {i}", references[i], key.reference_ingrainers[i]) for i in indices]
    options = _options(key, *benign)
    rederived = fit_ingrainers([member for _, member, _ in members], options, device="cpu")
    for (name, _, saved), (model, _, _) in zip(members, rederived):
        if _same(model, saved):
            audit.checked.append(name)
        else:
            audit.refusals.append(f"its {name} is not what its seed and recipe give (re-trained, it differs)")
    audit.passed = not audit.refusals
    return audit


def extend_references(key, num_reference_keys: int, benign_dataset=None, processor=None, show_progress: bool = False,
                      device=None) -> None:
    r"""
    Trains `key`'s missing reference ingrainers, so that it holds `num_reference_keys`: reference `i` from its own seed
    (`subseed(key.seed, f"reference:{i}")`) by the recipe `key.training_info` records, on the benign data the key was
    trained on. The key is then the one [`WatermarkKey.train_ingrainer`] would have trained with `num_reference_keys`
    from the start (bit for bit on a CPU, commitment included), at the cost of the new references alone.

    A key with more references is another key: its commitment changes. Extend a key before committing it to queries
    and before publishing its commitment; a key already committed is refused (a claim uses the key as committed).
    """
    if key.ingrainer is None:
        raise ValueError("The key has no trained ingrainer: call `key.train_ingrainer(...)` first.")
    have = len(key.reference_ingrainers)
    if num_reference_keys <= have:
        raise ValueError(f"`num_reference_keys` must be above the {have} references the key holds, got "
                         f"{num_reference_keys}.")
    if key.committed_queries:
        raise ValueError("The key is committed to its queries, and its commitment covers its references: extending it "
                         "would make another key than the one committed. Extend a key before `commit_queries`.")
    benign = _training_benign(key, benign_dataset, processor,
                              ", so that the new references are what its seed and recipe give.")
    info = key.training_info or {}
    versions = (info.get("versions") or {}).get("torch")
    if versions is not None and versions != torch.__version__:
        logger.warning("The key was trained with torch %s, its new references with %s: a key trained whole would "
                       "match them only up to rounding.", versions, torch.__version__)
    members = reference_keys(key, num_reference_keys)[have:]
    fitted = fit_ingrainers(members, _options(key, *benign), show_progress=show_progress, device=device)
    key.reference_ingrainers = [*key.reference_ingrainers, *(model for model, _, _ in fitted)]
    key.training_info = {**info, "num_reference_keys": num_reference_keys}
    forget_scores(key)
