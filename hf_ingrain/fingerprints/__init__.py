r"""
Fingerprints, the free baselines that ingrain is compared against (issue 35): nothing is trained into the owner's
model; the owner keeps it as it is and tests whether a suspect shares its idiosyncrasies. Each is judged by the
key-draw test against reference models the owner trained without the victim, so its verdict has a p-value.

- `victim_errors`: [`VictimErrorFingerprint`], the victim's own misclassified inputs as queries (the Anna Karenina
  heuristic of Godinot et al., AAAI 2025, https://huggingface.co/papers/2412.13021); labels only; images and text.
- `boundary`: [`BoundaryFingerprint`], images moved just across the victim's decision boundaries (IPGuard, Cao et
  al., AsiaCCS 2021); labels only; images.
- `decision_distance`: [`DecisionDistanceFingerprint`], the victim's decision distance vector on image pairs and
  their adversarial twins (ModelDiff, Li et al., ISSTA 2021); scores or labels; images.
- `base`: [`FingerprintResult`], the outcome of every fingerprint's `test`, and what the schemes share.
"""

from .base import FingerprintResult
from .boundary import BoundaryFingerprint
from .decision_distance import DecisionDistanceFingerprint
from .victim_errors import VictimErrorFingerprint

__all__ = ["BoundaryFingerprint", "DecisionDistanceFingerprint", "FingerprintResult", "VictimErrorFingerprint"]
