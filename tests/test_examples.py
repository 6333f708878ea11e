"""Every example the docs show runs as written: the README's Python blocks in order (the quick start, then what
builds on it), the Python blocks of every docs page in order (each page on a copy of what the README's quick start
made: its names, and its folders `owner_key/` and `watermarked/`), and every `Example:` block of the package's
docstrings.

Docstring examples are HF-style: they use names their surroundings define (`model`, `key`, `splits`, ...). Each runs
in a fresh folder, in a namespace holding exactly those names (`CONTEXT` below says what each is), against a loopback
Hub that holds the `someone/suspect` repository the Hub examples read. Shown outputs are illustrations (commitments,
p-values), except `True` and `False`, which are checked.
"""

import ast
import copy
import re
import secrets
import shutil
import types
from pathlib import Path

import pytest
import torch
from conftest import grayscale_processor, tiny_cnn

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def docstring_examples() -> list[tuple[str, str]]:
    """(where, code) of every ```python block in the package's docstrings."""
    found = []
    for path in sorted((ROOT / "hf_ingrain").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                doc = ast.get_docstring(node, clean=True) or ""
                for index, block in enumerate(CODE_BLOCK.findall(doc)):
                    name = getattr(node, "name", "module")
                    found.append((f"{path.relative_to(ROOT)}:{name}:{index}", block))
    return found


def doctest_statements(block: str) -> list[tuple[str, str | None]]:
    """(source, shown output) of each `>>>` statement, continuation lines (`...`) joined; plain code as one piece."""
    lines = block.splitlines()
    if not any(line.startswith(">>>") for line in lines):
        return [(block, None)]
    statements, index = [], 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith(">>>"):
            index += 1
            continue
        source = [line[4:]]
        index += 1
        while index < len(lines) and lines[index].startswith("..."):
            source.append(lines[index][4:])
            index += 1
        output = []
        while index < len(lines) and lines[index].strip() and not lines[index].startswith(">>>"):
            output.append(lines[index])
            index += 1
        statements.append(("\n".join(source), "\n".join(output) or None))
    return statements


def run_block(block: str, namespace: dict, where: str) -> None:
    for source, shown in doctest_statements(block):
        tree = ast.parse(source)
        if shown is not None and len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
            value = eval(compile(ast.Expression(tree.body[0].value), where, "eval"), namespace)  # noqa: S307
            if shown.strip() in ("True", "False"):
                assert value == (shown.strip() == "True"), f"{where}: {source} gave {value}, the docs show {shown}"
        else:
            exec(compile(tree, where, "exec"), namespace)  # noqa: S102


# ----------------------------------------------------------------------------------------------- docstring examples
@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """The names docstring examples take from their surroundings, built once (each example gets copies)."""
    from hf_ingrain import WatermarkKey, verify
    from hf_ingrain.data import load_image_dataset
    from hf_ingrain.verification import ingrain_statistics

    full = load_image_dataset()
    splits = {name: full[name].select(range(256)) for name in ("owner", "attacker", "test")}  # small: fast examples
    key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=50, seed=0)
    key.train_ingrainer(benign_dataset=splits["owner"], num_steps=100, show_progress=False, num_reference_keys=0)
    model = tiny_cnn(seed=1)
    per_query = ingrain_statistics(model, key, splits["test"])
    return {
        "splits": splits,  # owner / attacker / test splits of the embedded MNIST sample (256 images each)
        "key": key,  # the owner's WatermarkKey, its ingrainer trained
        "model": model,  # the model at hand: a small CNN classifier of the task
        "student": tiny_cnn(seed=2),  # a fresh student of the distillation attack
        "teacher": tiny_cnn(seed=3),  # the attacked model
        "processor": grayscale_processor(),  # the model's image processor
        "result": verify(model, key, splits["test"]),  # a verification result
        "independent_a": tiny_cnn(seed=4),  # models trained without the key
        "independent_b": tiny_cnn(seed=5),
        "runner_ups": per_query["runner_up"].tolist(),  # what ingrain_statistics returns
        "ingrainer_choices": per_query["ingrainer_choice"].tolist(),
    }


@pytest.mark.slow
@pytest.mark.hub
@pytest.mark.parametrize("where, block", docstring_examples(), ids=[w for w, _ in docstring_examples()])
def test_docstring_example_runs(where, block, context, loopback_hub, tmp_path, monkeypatch):
    from hf_ingrain.hub import push_to_hub

    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")  # examples name repository files from its root
    if "someone/suspect" in block:
        push_to_hub(context["model"], "someone/suspect", context["key"], verification_dataset=context["splits"]["test"])
    namespace = {name: copy.deepcopy(value) for name, value in context.items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        run_block(block, namespace, where)


def test_the_example_runner_checks_what_it_can():
    namespace = {}
    run_block(">>> x = 2\n>>> x + 1 == 3\nTrue\n>>> x\n7", namespace, "ok")  # 7 is an illustration
    with pytest.raises(AssertionError, match="the docs show True"):
        run_block(">>> 1 == 2\nTrue", {}, "wrong")
    assert doctest_statements(">>> f(\n...     1,\n... )\n'out'") == [("f(\n    1,\n)", "'out'")]
    assert len(docstring_examples()) >= 20


# ----------------------------------------------------------------------------------------------- the README and docs
def python_blocks(page: Path) -> list[str]:
    return CODE_BLOCK.findall(page.read_text())


def readme_blocks() -> tuple[str, list[str]]:
    """The README's quick start (the one Python block under its "Quick start" heading), and its other blocks, in
    order."""
    blocks = python_blocks(README)
    section = README.read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    assert CODE_BLOCK.findall(section) == blocks[:1], "the quick start is the README's first Python block, and its only"
    return blocks[0], blocks[1:]


def doc_pages() -> list[Path]:
    """Every page besides the README that shows Python: the docs, the recipes' and the model cards' READMEs."""
    pages = [ROOT / "CHANGELOG.md", ROOT / "recipes" / "README.md", ROOT / "model_cards" / "README.md",
             *sorted((ROOT / "docs").rglob("*.md"))]
    return [page for page in pages if python_blocks(page)]


# What a page says of its own code, checked after its blocks ran: (namespace, Hub) -> bool.
PAGE_CLAIMS = {
    "docs/guides/verify.md": lambda names, hub: names["result"].verified,
    "docs/guides/hub.md": lambda names, hub: names["result"].verified and bool(hub.commits("me/my-model")),
}


def _copy_names(namespace: dict) -> dict:
    """A page's own copy of the quick start's names: objects it may change are copied (one memo, so that shared
    objects stay shared); modules, classes, functions and what cannot be copied are the same objects."""
    memo, copied = {}, {}
    for name, value in namespace.items():
        if name == "__builtins__" or isinstance(value, (types.ModuleType, type, types.FunctionType)):
            copied[name] = value
            continue
        try:
            copied[name] = copy.deepcopy(value, memo)
        except Exception:  # noqa: BLE001 - e.g. a Trainer's accelerator: shared, and no page changes it
            copied[name] = value
    return copied


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory):
    """The README's quick start, run once for the README and every docs page: its names and its folder."""
    folder = tmp_path_factory.mktemp("quick_start")
    namespace = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        # The quick start draws its key's seed from the operating system; CI draws seed 0 (the other tests' key) so
        # that every run checks the same key. The README reports the spread of p-values over keys it measured.
        patch.setattr(secrets, "randbits", lambda bits: 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            run_block(readme_blocks()[0], namespace, "README quick start")
    # what the README says of its own code
    assert namespace["result"].verified and (folder / "watermarked" / "model.safetensors").is_file()
    return folder, namespace


def run_page(blocks: list[str], where: str, quick_start, hub, tmp_path, monkeypatch) -> dict:
    """Runs a page's blocks in order, in a copy of the quick start's folder and names; a page that reads the Hub's
    `someone/suspect` finds the quick start's watermarked model there."""
    folder, names = quick_start
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(secrets, "randbits", lambda bits: 0)  # keys a page draws (a thief's) are the same every run
    namespace = _copy_names(names)
    if any("someone/suspect" in block for block in blocks):
        from hf_ingrain.hub import push_to_hub

        push_to_hub(names["model"], "someone/suspect", names["key"], verification_dataset=names["splits"]["test"])
    for index, block in enumerate(blocks, start=1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(index)
            run_block(block, namespace, f"{where} block {index}")
    return namespace


@pytest.mark.slow
@pytest.mark.hub
def test_the_readme_examples_run_in_order(quick_start, loopback_hub, tmp_path, monkeypatch, capsys):
    # the quick start made its key in memory: the Hub block loads a small-CNN repository in a process that has loaded
    # no small model yet (which 0.2's loader first refused as custom code; it registers the package's models first)
    namespace = run_page(readme_blocks()[1], "README", quick_start, loopback_hub, tmp_path, monkeypatch)
    print(capsys.readouterr().out)
    # the Hub block: the quick start's model, published as someone/suspect, verifies with its card's commitment
    assert namespace["result"].verified and namespace["result"].commitment_match


@pytest.mark.slow
@pytest.mark.hub
@pytest.mark.parametrize("page", doc_pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_the_docs_examples_run_in_order(page, quick_start, loopback_hub, tmp_path, monkeypatch, capsys):
    where = str(page.relative_to(ROOT))
    namespace = run_page(python_blocks(page), where, quick_start, loopback_hub, tmp_path, monkeypatch)
    print(capsys.readouterr().out)
    if where in PAGE_CLAIMS:
        assert PAGE_CLAIMS[where](namespace, loopback_hub), f"{where}: its code did not do what the page says"


def test_the_readme_and_docs_blocks_are_found():
    quick, rest = readme_blocks()
    assert "IngrainTrainer" in quick and rest  # the quick start, then the Hub block
    shown = {str(page.relative_to(ROOT)) for page in doc_pages()}
    assert {"docs/guides/verify.md", "docs/guides/attack.md", "docs/guides/hub.md"} <= shown
    assert set(PAGE_CLAIMS) <= shown
