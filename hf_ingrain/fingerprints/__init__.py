r"""
Fingerprints, the free baselines that ingrain is compared against (issue 35): nothing is trained into the owner's
model; the owner keeps it as it is and tests whether a suspect shares its idiosyncrasies.

- `victim_errors`: [`VictimErrorFingerprint`], the victim's own misclassified inputs as queries (the Anna Karenina
  heuristic of Godinot et al., AAAI 2025, https://huggingface.co/papers/2412.13021), judged from labels alone by the
  key-draw test against reference models the owner trained without the victim; [`FingerprintResult`], its outcome.
"""

from .victim_errors import FingerprintResult, VictimErrorFingerprint

__all__ = ["FingerprintResult", "VictimErrorFingerprint"]
