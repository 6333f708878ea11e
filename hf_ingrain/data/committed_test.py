r"""
The test an owner commits to with the query set: protocol, significance level, query budget and ladder.

A committed query set alone leaves the test open. An owner who has seen a suspect's answers could still pick, among
the protocols, the budgets (every prefix of the committed order), the degradation ladders and the significance
levels, the one that verifies, and report it as if it had been the plan (a review measured a worst case of about
4e-5 against a nominal `alpha = 1e-6`, from the budget choice and the binomial part alone). So [`WatermarkKey.commit_queries`](`hf_ingrain.WatermarkKey.commit_queries`)
records the test too, in the same `queries` block (covered by the key's commitment, published in the model card at
the first publication), and [`verify`](`hf_ingrain.verify`) says whether the test it ran is the committed one
(`committed_test`). A claim stands only on the committed test; any other test still reports its p-value, which
answers "is the watermark present?" (a question for the owner before publishing), not "does the claim stand?".

The block, `{"protocol", "alpha", "max_queries", "ladder"}`: `max_queries` only for the label-only protocols (the
scores protocols send every query once), `ladder` only for `"ingrain_labels"`.
"""

SCORES_PROTOCOLS = ("ingrain", "ingrain_scores")
"""The protocols that read the suspect's scores (its two highest, or all of them), each query sent once."""
LABEL_ONLY_PROTOCOLS = ("ingrain_labels", "ingrain_errors")
"""The protocols that read the suspect's top-1 labels alone, under a query budget."""
INGRAIN_PROTOCOLS = ("ingrain", *LABEL_ONLY_PROTOCOLS, "ingrain_scores")
"""The protocols that read benign queries, hence can be committed with them (`"carriers"` reads the key's own)."""
TEST_FIELDS = ("protocol", "alpha", "max_queries", "ladder")


def committed_test(protocol: str = "ingrain", alpha: float = 1e-6, max_queries: int | None = None,
                   ladder: str = "occlusion") -> dict:
    """The test block for these parameters, normalised (fields that the protocol does not use are `None`), after
    checking them: what a key commits to, and what a verification compares with it."""
    from .image_ops import LADDERS

    if protocol not in INGRAIN_PROTOCOLS:
        raise ValueError(
            f"Cannot commit to the protocol {protocol!r}: a committed test is one of {INGRAIN_PROTOCOLS} (the "
            "protocols that read the committed queries)."
        )
    if not 0 < float(alpha) < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
    label_only = protocol in LABEL_ONLY_PROTOCOLS
    if max_queries is not None and (not label_only or int(max_queries) < 1):
        raise ValueError(
            f"`max_queries` ({max_queries}) is a budget of the label-only protocols, >= 1: leave it out for "
            f"{protocol!r}." if not label_only else f"`max_queries` must be >= 1, got {max_queries}."
        )
    if protocol == "ingrain_labels" and ladder not in LADDERS:
        raise ValueError(f"Unknown ladder {ladder!r}; choose one of {LADDERS}.")
    return {
        "protocol": protocol,
        "alpha": float(alpha),
        "max_queries": int(max_queries) if max_queries is not None else None,
        "ladder": ladder if protocol == "ingrain_labels" else None,
    }


def read_committed_test(block) -> dict | None:
    """The committed test of a `queries` block (from a key or a model card), checked; `None` when none was committed.
    A block that a claimant wrote by hand with other fields or values is refused here, with what is wrong."""
    test = (block or {}).get("test") if isinstance(block, dict) else None
    if test is None:
        return None
    if not isinstance(test, dict) or set(test) - set(TEST_FIELDS):
        raise ValueError(f"The committed test {test!r} is not a block of {TEST_FIELDS}.")
    return committed_test(test.get("protocol"), test.get("alpha", 0), test.get("max_queries"),
                          test.get("ladder") or "occlusion")


def test_differences(committed: dict | None, used: dict) -> list[str] | None:
    """How the test `used` (a block from [`committed_test`]) differs from the `committed` one: `None` when none was
    committed, `[]` when it is the committed test, else one `"name x (committed y)"` per difference (the protocol
    alone when it differs)."""
    if committed is None:
        return None
    if used["protocol"] != committed["protocol"]:  # the other fields follow from the protocol
        return [f"protocol {used['protocol']!r} (committed {committed['protocol']!r})"]
    return [f"{name} {used[name]!r} (committed {committed[name]!r})" for name in TEST_FIELDS
            if used[name] != committed[name]]
