"""The module paths of hf_ingrain 0.1, kept for one release: `from hf_ingrain.queries import hardest_first` still
works, with a `FutureWarning` that names the new home (CHANGELOG.md lists every move).

Each old path is answered with a small module that forwards every attribute to the new one, so the objects are the
same (`hf_ingrain.queries.read_queries is hf_ingrain.data.read_queries`). Nothing is imported until an old path is.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "hf_ingrain.statistics": "hf_ingrain.verification",
    "hf_ingrain.label_only": "hf_ingrain.verification",
    "hf_ingrain.calibration": "hf_ingrain.verification",
    "hf_ingrain.queries": "hf_ingrain.verification",  # its query set is in hf_ingrain.data, re-exported there too
    "hf_ingrain.model_card": "hf_ingrain.hub.model_card",
    "hf_ingrain.provenance": "hf_ingrain.hub.provenance",
    "hf_ingrain.text_data": "hf_ingrain.data",
    "hf_ingrain.model_inputs": "hf_ingrain.data",
    "hf_ingrain.image_ops": "hf_ingrain.data",
    "hf_ingrain.plots": "hf_ingrain.benchmark.plots",
    "hf_ingrain.attacks.queries": "hf_ingrain.attacks.query_sources",
}
# names an old module held that its new home does not re-export
EXTRA = {
    "hf_ingrain.queries": "hf_ingrain.data.query_set",
    "hf_ingrain.label_only": "hf_ingrain.verification.label_only",
    "hf_ingrain.statistics": "hf_ingrain.verification.statistics",
    "hf_ingrain.calibration": "hf_ingrain.verification.calibration",
    "hf_ingrain.model_inputs": "hf_ingrain.data.preparation",
    "hf_ingrain.text_data": "hf_ingrain.data.text",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers the old paths of `MOVED`, and only those."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        name = module.__name__
        warnings.warn(
            f"`{name}` moved to `{MOVED[name]}` in hf_ingrain 0.2; the old path goes in 0.3.", FutureWarning,
            stacklevel=2,
        )
        homes = [importlib.import_module(home) for home in (MOVED[name], EXTRA.get(name)) if home]

        def __getattr__(attribute):
            for home in homes:
                if hasattr(home, attribute):
                    return getattr(home, attribute)
            raise AttributeError(f"module {name!r} has no attribute {attribute!r} (it moved to {MOVED[name]!r})")

        module.__getattr__ = __getattr__
        module.__doc__ = f"Moved to `{MOVED[name]}` (hf_ingrain 0.2)."


def install() -> None:
    """Puts the finder on `sys.meta_path` once."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
