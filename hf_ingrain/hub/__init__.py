r"""
What publishes, and what a later claim stands on: the Hub side of a watermark.

- `publish`: [`push_to_hub`], one commit of safe files with the watermark card (`IngrainTrainer.push_to_hub` goes
  through it too).
- `from_hub`: [`verify_from_hub`], a model downloaded at one commit, its card's commitment compared with the key, and
  with `reference_repo_id` a claim of ownership.
- `model_card`: the card and its `watermark` block (the key's commitment, never the key).
- `provenance`: which came first, the owner's commitment or the suspect ([`~provenance.check_claim`]), each date with
  its source.
- `timestamps`: RFC 3161 timestamps of the commitment (`openssl ts`), the one date a claimant cannot write.
- `lineage`: the suspect's first publication of the tested weights, through the `base_model` its card declares.
"""

from ..suspects import is_hub_id
from .from_hub import HubVerificationResult, verify_from_hub
from .publish import push_to_hub

__all__ = ["HubVerificationResult", "is_hub_id", "push_to_hub", "verify_from_hub"]
