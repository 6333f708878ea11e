r"""
Fingerprints, the free baselines that ingrain is compared against (issue 35): nothing is trained into the owner's
model; the owner keeps it as it is and tests whether a suspect shares its idiosyncrasies. Each is judged by the
key-draw test against reference models the owner trained without the victim, so its verdict has a p-value.

That p-value holds for suspects drawn like the references (the victim's recipe with other seeds), not for every
innocent model: measured (`docs/fingerprints/README.md`), the boundary fingerprint accused an innocent ViT and the
decision distances a ResNet trained a third as long, at p down to 1e-11, where the references were ResNets of the
victim's length. Train references of every recipe a suspect may have come from. Ingrain's test has no such limit: it
compares the suspect with the keys that could have been drawn instead, whatever the suspect is.

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
