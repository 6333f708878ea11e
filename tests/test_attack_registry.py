"""The registry of attacks (`hf_ingrain.attacks.registry`): one file declares an attack, and the `hf-ingrain attack`
subcommands and the benchmark's columns are built from it."""

import importlib
import re
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import hf_ingrain.attacks
from hf_ingrain.attacks import PruneAttack, QuantizeAttack, WeightNoiseAttack, registry
from hf_ingrain.attacks.prune import prunable_weights
from hf_ingrain.attacks.registry import AttackSpec, BenchmarkColumns, attack_specs, register_attack, unregister_attack
from hf_ingrain.benchmark import (
    ATTACKS, OPTIONAL_ATTACKS, ExperimentConfig, _Experiment, check_attack_name, run_benchmark,
)
from hf_ingrain.cli import main
from hf_ingrain.suspects import load_model

from conftest import tiny_cnn

ROOT = Path(__file__).resolve().parents[1]


def contributing_example() -> str:
    """The worked example of CONTRIBUTING.md: the whole file a contributor adds, `hf_ingrain/attacks/scale.py`."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "CONTRIBUTING.md").read_text(), flags=re.DOTALL)
    (example,) = [block for block in blocks if block.startswith("# hf_ingrain/attacks/scale.py\n")]
    return example


@pytest.fixture
def scale_attack(tmp_path, monkeypatch):
    """The example saved as one new file of the attacks package, found by the registry's own discovery (a fresh
    registry, a folder added to the package's path); all of it undone after the test."""
    folder = tmp_path / "added"
    folder.mkdir()
    (folder / "scale.py").write_text(contributing_example())
    monkeypatch.setattr(hf_ingrain.attacks, "__path__", [*hf_ingrain.attacks.__path__, str(folder)])
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_LOADED", False)
    importlib.invalidate_caches()
    yield
    sys.modules.pop("hf_ingrain.attacks.scale", None)


def test_one_new_file_is_a_subcommand_with_its_flags(scale_attack, tmp_path, capsys):
    assert main(["attack"]) == 2  # no attack named: the list of attacks, one line each
    assert re.search(r"scale\s+Multiply its weights by a factor\.", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["attack", "scale", "--help"])
    assert re.search(r"--factor FACTOR\s+Factor of every weight \(> 0\)\. \(default: 0\.5\)", capsys.readouterr().out)

    target = tiny_cnn(seed=0)
    target.save_pretrained(tmp_path / "target")
    output = tmp_path / "scaled"
    flags = ["--model", str(tmp_path / "target"), "--output", str(output), "--factor", "0.25"]
    assert main(["attack", "scale", *flags]) == 0
    assert f"scale: saved the attacked model and its card to {output}" in capsys.readouterr().out
    assert "| factor | 0.25 |" in (output / "README.md").read_text()
    for scaled, original in zip(prunable_weights(load_model(str(output))), prunable_weights(target)):
        assert torch.equal(scaled, original * 0.25)


def test_one_new_file_is_a_benchmark_column_and_a_link_of_chains(scale_attack, tmp_path):
    with pytest.raises(ValueError, match=r"Unknown attack 'scale_0.3'.*'scale_0.5'"):  # a family lists its names
        ExperimentConfig(attacks=["scale_0.3"])
    config = ExperimentConfig(
        max_examples=200, epochs=1, ingrainer_steps=5, num_reference_keys=1, ingrain_lambdas=[], schemes=[],
        hidden_channels=[4, 8], hidden_size=16, attacks=["scale_0.5", "prune_50+scale_0.5"],
    )
    results = run_benchmark(config, str(tmp_path / "run"), show_progress=False)
    assert [cell["attack"] for cell in results["cells"]] == ["none", "scale_0.5", "prune_50+scale_0.5"]
    header = "| scheme | clean acc. | before | scale_0.5 | prune_50+scale_0.5 |"
    assert header in (tmp_path / "run" / "results.md").read_text()

    experiment = _Experiment(config, str(tmp_path / "run"))
    teacher = experiment.new_model(1)
    with tempfile.TemporaryDirectory() as scratch:
        chained = experiment.attack("prune_50+scale_0.5", teacher, scratch)
    expected = prunable_weights(PruneAttack(teacher, rate=0.5).run())
    assert all(torch.equal(w, e * 0.5) for w, e in zip(prunable_weights(chained), expected))


def test_without_the_file_there_is_no_such_attack():
    assert "scale" not in attack_specs()
    with pytest.raises(ValueError, match="Unknown attack 'scale_0.5'"):
        check_attack_name("scale_0.5")
    with pytest.raises(SystemExit):  # argparse: invalid choice
        main(["attack", "scale", "--model", "m", "--output", "o"])


def test_the_attacks_of_the_package_keep_their_subcommands_and_columns():
    specs = attack_specs()
    commands = {name for name, spec in specs.items() if spec.run_cli is not None}
    assert commands == {"distill", "extract", "overwrite", "finetune", "fineprune", "prune", "quantize", "noise", "wrk",
                        "dehydration", "removalnet"}
    assert specs["input_transform"].run_cli is None  # a deployment, not weights: no saved form
    for name in ATTACKS + OPTIONAL_ATTACKS:  # each link of each listed column is one attack's, and only one's
        check_attack_name(name)
    assert len(ATTACKS + OPTIONAL_ATTACKS) == len(set(ATTACKS + OPTIONAL_ATTACKS)) == 32


@pytest.mark.parametrize(
    "column, expected",
    [  # the same models as the benchmark computed before the registry, from the same seed (the run's + 7)
        ("prune_50", lambda teacher, seed: PruneAttack(teacher, rate=0.5).run()),
        ("quantize_4bit", lambda teacher, seed: QuantizeAttack(teacher, bits=4, method="uniform").run()),
        ("noise_0.3", lambda teacher, seed: WeightNoiseAttack(teacher, scale=0.3, seed=seed).run()),
    ],
)
def test_a_column_is_its_attack_at_the_benchmarks_seed(column, expected, tmp_path):
    experiment = _Experiment(ExperimentConfig(max_examples=50, seed=3, attacks=[column]), str(tmp_path))
    teacher = experiment.new_model(1)
    attacked = experiment.attack(column, teacher, str(tmp_path))
    assert all(torch.equal(a, e) for a, e in zip(prunable_weights(attacked), prunable_weights(expected(teacher, 10))))


def test_the_registry_refuses_a_second_claim_on_a_name_or_a_column():
    def run_cli(model, target):
        return model, {}

    with pytest.raises(ValueError, match="registered already"):
        register_attack(AttackSpec(name="prune", help="Another prune.", run_cli=run_cli))
    with pytest.raises(ValueError, match="both claim the columns \\['prune_50'\\]"):
        columns = (BenchmarkColumns(r"prune_(\d+)", None, names=("prune_50",)),)
        register_attack(AttackSpec(name="other", help="x", columns=columns))
    with pytest.raises(ValueError, match="do not match"):
        BenchmarkColumns(r"scale_(\d+)", None, names=("scale_0.5",))
    with pytest.raises(ValueError, match="no `run_cli`"):
        AttackSpec(name="other", help="x", trains=True, columns=(BenchmarkColumns("other", None, names=("other",)),))
    spec = register_attack(AttackSpec(name="other", help="A user's own attack.", run_cli=run_cli))
    try:
        assert attack_specs()["other"] is spec
    finally:
        assert unregister_attack("other") is spec
    assert "other" not in attack_specs()
