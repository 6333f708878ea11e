"""The package's shape, checked: no import circle (module-level or inside functions), no module over ~400 lines, no
script that reaches the package through `sys.path`, and every name the docs show importable from where they show it."""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hf_ingrain"
MAX_LINES = 400  # "about 400": a module that grows past it holds two concerns; split it by concern


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py") if "metrics/ingrain_watermark" not in str(path)}


def _imports(name: str, is_package: bool, source: str, known: set[str]) -> set[str]:
    """Every package module `name` imports, at module level or inside a function, with the packages on the way
    (importing `a.b.c` runs `a.b`'s `__init__` first). The packages that hold `name` are left out: they are being
    imported already when `name` runs."""
    package = name if is_package else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            parts = candidate.split(".")
            for end in range(2, len(parts) + 1):  # every package on the way, and the module itself
                if ".".join(parts[:end]) in known:
                    targets.add(".".join(parts[:end]))
    parts = name.split(".")
    ancestors = {".".join(parts[:end]) for end in range(1, len(parts) + 1)}  # already being imported when `name` runs
    return targets - ancestors


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, done = [], set()

    def visit(node, stack, on_stack):
        on_stack.add(node)
        stack.append(node)
        for target in sorted(graph[node]):
            if target in on_stack:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in done:
                visit(target, stack, on_stack)
        stack.pop()
        on_stack.discard(node)
        done.add(node)

    for name in sorted(graph):
        if name not in done:
            visit(name, [], set())
    return cycles


def test_no_import_circle():
    modules = _modules()
    graph = {
        name: _imports(name, path.name == "__init__.py", path.read_text(), set(modules))
        for name, path in modules.items()
    }
    cycles = _cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_check_finds_the_circle_of_version_0_1():
    # hub -> model_card -> ingrain_trainer -> hub, the last two inside functions
    sources = {
        "hf_ingrain.hub": "from .model_card import render_model_card\n",
        "hf_ingrain.model_card": "def card():\n    from .ingrain_trainer import IngrainTrainer\n",
        "hf_ingrain.ingrain_trainer": "def create_model_card():\n    from .hub import save_watermark_card\n",
    }
    graph = {name: _imports(name, False, source, set(sources)) for name, source in sources.items()}
    assert _cycles(graph) == [["hf_ingrain.hub", "hf_ingrain.model_card", "hf_ingrain.ingrain_trainer", "hf_ingrain.hub"]]


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_module_holds_more_than_about_400_lines(name):
    lines = len(_modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by concern"


def _scripts() -> list[Path]:
    """The recipes (`recipes/*.py`) and the research scripts beside their results (`docs/<topic>/*.py`)."""
    return sorted((ROOT / "recipes").glob("*.py")) + sorted((ROOT / "docs").rglob("*.py"))


def test_scripts_import_the_package_not_each_other():
    scripts = _scripts()
    assert {"ingrain", "label_only", "arch_cost", "false_positives", "hard_label_trace", "full_mnist_tables",
            "bench_overhead", "reordered_queries"} <= {script.stem for script in scripts}
    local = {script.stem for script in scripts}
    for script in scripts:
        text = script.read_text()
        assert "sys.path" not in text, script
        tree = ast.parse(text)
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not imported & local, (script, imported & local)


# every name the README, the docs, the recipes' README and the docstrings show, importable from where they show it
DOCUMENTED = [
    "hf_ingrain:DistillationConfig", "hf_ingrain:DistillationTrainer", "hf_ingrain:IngrainConfig",
    "hf_ingrain:IngrainTrainer", "hf_ingrain:VerificationResult", "hf_ingrain:WatermarkKey", "hf_ingrain:calibrate_null",
    "hf_ingrain:NullCalibration", "hf_ingrain:verify", "hf_ingrain:__version__", "hf_ingrain:WatermarkTakesCallback",
    "hf_ingrain.hub:push_to_hub", "hf_ingrain.hub:verify_from_hub", "hf_ingrain.hub:is_hub_id",
    "hf_ingrain.hub:HubVerificationResult", "hf_ingrain.hub.model_card:render_model_card",
    "hf_ingrain.hub.model_card:watermark_metadata", "hf_ingrain.hub.model_card:save_watermark_card",
    "hf_ingrain.hub.provenance:check_claim",
    "hf_ingrain.attacks:DistillationConfig", "hf_ingrain.attacks:DistillationTrainer", "hf_ingrain.attacks:FineTuneAttack",
    "hf_ingrain.attacks:PruneAttack", "hf_ingrain.attacks:QuantizeAttack", "hf_ingrain.attacks:FinePruneAttack",
    "hf_ingrain.attacks:InputTransformAttack", "hf_ingrain.attacks:WeightNoiseAttack",
    "hf_ingrain.attacks:ExtractionAttack", "hf_ingrain.attacks:OverwriteAttack", "hf_ingrain.attacks:EnsembleModel",
    "hf_ingrain.attacks:build_student", "hf_ingrain.attacks:make_queries",
    "hf_ingrain.verification:verify", "hf_ingrain.verification:VerificationResult",
    "hf_ingrain.verification:LABEL_PROTOCOLS", "hf_ingrain.verification:PROTOCOLS", "hf_ingrain.verification:LADDERS",
    "hf_ingrain.verification:ingrain_null_rate", "hf_ingrain.verification:ingrain_statistics",
    "hf_ingrain.verification:ingrain_queries", "hf_ingrain.verification:label_only_queries",
    "hf_ingrain.verification:hardest_first", "hf_ingrain.verification:calibrate_null",
    "hf_ingrain.verification:false_positive_table", "hf_ingrain.verification:summary",
    "hf_ingrain.verification:runner_up", "hf_ingrain.verification:key_draw_p_value",
    "hf_ingrain.data:load_image_dataset", "hf_ingrain.data:load_text_dataset", "hf_ingrain.data:prepare_dataset",
    "hf_ingrain.data:load_data", "hf_ingrain.data:load_processor", "hf_ingrain.data:read_queries",
    "hf_ingrain.models:SmallCNNConfig", "hf_ingrain.models:SmallCNNForImageClassification",
    "hf_ingrain.models:SmallTextConfig", "hf_ingrain.models:SmallTextForSequenceClassification",
    "hf_ingrain.models:build_classifier", "hf_ingrain.models:register_auto_classes",
    "hf_ingrain.metrics:metric_path", "hf_ingrain.watermarks:AdiKey",
    "hf_ingrain.watermarks:ZhangKey", "hf_ingrain.watermarks:UchidaKey", "hf_ingrain.watermarks:UchidaConfig",
    "hf_ingrain.watermarks:UchidaTrainer", "hf_ingrain.watermarks:verify_uchida",
    "hf_ingrain.watermarks:verify_trigger_set", "hf_ingrain.watermarks:embed_trigger_set",
    "hf_ingrain.watermarks:load_key", "hf_ingrain.cli:main", "hf_ingrain.suspects:load_suspect",
    "hf_ingrain.scripts:IngrainParser", "hf_ingrain.keys:audit_key", "hf_ingrain.keys:KeyAudit",
]
# where 0.1's README and docstrings showed names: they still import (with a FutureWarning) until 0.3
MOVED_IN_0_2 = [
    "hf_ingrain.label_only:label_only_queries", "hf_ingrain.model_card:render_model_card",
    "hf_ingrain.model_card:watermark_metadata", "hf_ingrain.model_card:save_watermark_card",
    "hf_ingrain.queries:hardest_first", "hf_ingrain.queries:read_queries", "hf_ingrain.calibration:calibrate_null",
    "hf_ingrain.statistics:key_draw_p_value", "hf_ingrain.text_data:load_text_dataset",
    "hf_ingrain.model_inputs:prepare_dataset", "hf_ingrain.provenance:check_claim",
    "hf_ingrain.attacks.queries:make_queries",
]


def test_no_top_level_module_but_the_handful_that_state_their_room():
    top = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    assert top == ["_moved", "extras", "files", "hashing", "losses", "models", "processes"], top
    for stem in top:
        assert ast.get_docstring(ast.parse((PACKAGE / f"{stem}.py").read_text())), f"{stem}.py: say what room it is"


@pytest.mark.parametrize("where", MOVED_IN_0_2)
def test_names_at_their_0_1_paths_import_with_a_warning_and_are_the_same_objects(where):
    import subprocess
    import sys

    module, name = where.split(":")
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = getattr(importlib.import_module({module!r}), {name!r})\n"
        "assert any(issubclass(w.category, FutureWarning) and 'moved to' in str(w.message) for w in caught), caught\n"
        "import hf_ingrain.verification, hf_ingrain.data, hf_ingrain.hub.model_card, hf_ingrain.hub.provenance\n"
        "import hf_ingrain.attacks.query_sources\n"
        f"homes = [hf_ingrain.verification, hf_ingrain.data, hf_ingrain.hub.model_card, hf_ingrain.hub.provenance,\n"
        "         hf_ingrain.attacks.query_sources]\n"
        f"assert any(getattr(home, {name!r}, None) is old for home in homes)\n"
    )
    # a fresh interpreter: the warning is raised when an old path is first imported
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_importing_the_package_registers_nothing_with_transformers():
    import subprocess
    import sys

    code = (
        "import hf_ingrain\n"
        "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
        "assert 'small_cnn' not in CONFIG_MAPPING\n"
        "from hf_ingrain.suspects import load_model  # loading registers, and only loading\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("where", DOCUMENTED)
def test_documented_names_are_importable_where_the_docs_show_them(where):
    module, name = where.split(":")
    assert hasattr(importlib.import_module(module), name), where


def test_the_documented_list_covers_the_readme():
    shown = set()
    docs = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "recipes" / "README.md",
            ROOT / "model_cards" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for doc in docs:
        for module, names in re.findall(r"from (hf_ingrain[\w.]*) import ([\w, ]+)", doc.read_text()):
            shown |= {f"{module}:{name.strip()}" for name in names.split(",")}
    assert shown <= set(DOCUMENTED), sorted(shown - set(DOCUMENTED))
