import json
import os
import shutil
from pathlib import Path

import pytest

from hf_ingrain.benchmark import (
    ExperimentConfig, _Experiment, results_markdown, run_benchmark, run_benchmark_seeds, summarize_seeds, summary_markdown,
)
from hf_ingrain.cli import main

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
    values = dict(
        max_examples=500, epochs=1, attack_epochs=1, finetune_epochs=1, ingrainer_steps=10, num_reference_keys=2,
        ingrain_lambdas=[0.5],
        schemes=["adi"], attacks=["distill_T4", "prune_50"], hidden_channels=[4, 8], hidden_size=16,
    )
    return ExperimentConfig(**{**values, **overrides})


def test_benchmark_writes_every_cell_table_and_plot_and_resumes(tmp_path, monkeypatch):
    config = tiny_config()
    results = run_benchmark(config, str(tmp_path), show_progress=False)
    schemes = ["reference", "adi", "ingrain_lambda_0.5"]
    assert [(c["scheme"], c["attack"]) for c in results["cells"]] == [
        (s, a) for s in schemes for a in ("none", "distill_T4", "prune_50")
    ]
    for name in ("results.json", "results.md", "robustness.png", "lambda_tradeoff.png"):
        assert os.path.getsize(tmp_path / name) > 0
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {s} |" in table for s in schemes)
    assert set(results["key_commitments"]) == set(schemes)  # commitments only: no key is written
    assert not any("key" in name for _, dirs, files in os.walk(tmp_path) for name in dirs + files if name != "results.json")

    # False claims: each key on every unattacked model not derived from it, the thief's own model included.
    claims = {(c["key"], c["model"]): c for c in results["false_claims"]}
    assert list(claims) == [
        ("adi", "reference"), ("adi", "ingrain_lambda_0.5"), ("adi", "_thief_0"),
        ("ingrain", "reference"), ("ingrain", "adi"), ("ingrain", "_thief_0"),
    ]
    reference = next(c for c in results["cells"] if (c["scheme"], c["attack"]) == ("reference", "none"))
    assert claims["ingrain", "reference"]["p_value"] == reference["p_value"]  # the same model under the same test
    assert all(0 <= c["p_value"] <= 1 and 0 <= c["score"] <= 1 for c in claims.values())
    assert "False claims" in table and "| ingrain | " in table

    # A second run reuses every cell and model: training, attacking or deriving a key again would fail here.
    monkeypatch.setattr(_Experiment, "train", lambda *a, **k: pytest.fail("retrained a saved model"))
    monkeypatch.setattr(_Experiment, "attack", lambda *a, **k: pytest.fail("re-ran a finished cell"))
    monkeypatch.setattr(_Experiment, "thief_model", lambda *a, **k: pytest.fail("retrained the thief's model"))
    monkeypatch.setattr(_Experiment, "key", lambda *a, **k: pytest.fail("derived a key again"))
    again = run_benchmark(config, str(tmp_path), show_progress=False)
    assert again["cells"] == results["cells"] and again["false_claims"] == results["false_claims"]


@pytest.mark.slow  # ~40 s: two processes; CI runs it, the default pytest stays within its 5 minutes
def test_a_run_in_two_processes_computes_the_same_cells_as_one(tmp_path, monkeypatch):
    # The tests run on one thread (conftest), so each of the two processes gets one too, and every cell, from the
    # key's ingrainers to the attacked models' p-values, must come out bit for bit as in one process.
    config = tiny_config(attacks=["prune_50"])
    one = run_benchmark(config, str(tmp_path / "one"), show_progress=False)
    config.num_proc = 2
    two = run_benchmark(config, str(tmp_path / "two"), show_progress=False)
    assert two["cells"] == one["cells"] and len(two["cells"]) == 6 and two["false_claims"] == one["false_claims"]
    assert set(two["key_commitments"]) == {"reference", "adi", "ingrain_lambda_0.5"}
    # the processes wrote every cell, so resuming in one process computes nothing
    monkeypatch.setattr(_Experiment, "attack", lambda *a, **k: pytest.fail("re-ran a finished cell"))
    config.num_proc = 1  # not a cell field: a run may resume with another number of processes
    assert run_benchmark(config, str(tmp_path / "two"), show_progress=False)["cells"] == one["cells"]
    with pytest.raises(ValueError, match="num_proc"):
        tiny_config(num_proc=0)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished run of the reference model under one attack (copied by each test that changes it)."""
    config = tiny_config(schemes=[], attacks=["prune_50"])
    folder = tmp_path_factory.mktemp("finished")
    run_benchmark(config, str(folder), show_progress=False)
    return config, folder


def _copy_of(finished_run, tmp_path):
    config, folder = finished_run
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    return config


def test_a_lost_cell_is_recomputed_from_the_saved_model(finished_run, tmp_path, monkeypatch):
    config = _copy_of(finished_run, tmp_path)
    os.remove(tmp_path / "cells" / "reference" / "prune_50.json")
    monkeypatch.setattr(_Experiment, "train", lambda *a, **k: pytest.fail("retrained a saved model"))
    results = run_benchmark(config, str(tmp_path), show_progress=False)
    assert ("reference", "prune_50") in {(c["scheme"], c["attack"]) for c in results["cells"]}


def test_an_optional_attack_adds_a_column_to_a_finished_run(finished_run, tmp_path, monkeypatch):
    # noise_* (WeightNoiseAttack) and the input transforms (InputTransformAttack) are not in the default grid; a
    # config may add them, and a resumed run computes only the new columns, from the saved model.
    config = _copy_of(finished_run, tmp_path)
    config.attacks = ["prune_50", "noise_0.3", "blur_1.0", "fineprune_50", "finetune_ls_0.1"]
    monkeypatch.setattr(_Experiment, "train", lambda *a, **k: pytest.fail("retrained a saved model"))
    results = run_benchmark(config, str(tmp_path), show_progress=False)
    cells = {(c["scheme"], c["attack"]): c for c in results["cells"]}
    assert ("reference", "noise_0.3") in cells and 0 <= cells["reference", "noise_0.3"]["test_accuracy"] <= 1
    assert 0 <= cells["reference", "blur_1.0"]["test_accuracy"] <= 1 and ("reference", "fineprune_50") in cells
    assert ("reference", "finetune_ls_0.1") in cells
    assert "noise_0.3" in (tmp_path / "results.md").read_text()


@pytest.mark.slow  # ~15 s on an idle machine: a key for the thief, the thief's model, a ViT student
def test_extraction_architectures_ensembles_overwriting_and_chains_are_columns(finished_run, tmp_path, monkeypatch):
    config = _copy_of(finished_run, tmp_path)
    new = ["extract_strokes_1k_labels", "distill_T4_vit", "ensemble_2", "overwrite", "prune_50+finetune_FTAL+distill_T4"]
    config.attacks = ["prune_50"] + new
    monkeypatch.setattr(_Experiment, "train", lambda *a, **k: pytest.fail("retrained a saved model"))
    results = run_benchmark(config, str(tmp_path), show_progress=False)
    cells = {c["attack"]: c for c in results["cells"]}
    assert all(0 <= cells[name]["test_accuracy"] <= 1 and cells[name]["verified"] is not None for name in new)
    overwrite = cells["overwrite"]  # both claims, and the thief's key on the owner's original
    assert {"thief_verified", "thief_p_value", "thief_on_original_verified", "thief_key_commitment"} <= set(overwrite)
    assert overwrite["thief_key_commitment"] != results["key_commitments"]["reference"]
    assert os.path.isfile(tmp_path / "models" / "_thief_0" / "model.safetensors")  # the thief's own model, reused
    table = (tmp_path / "results.md").read_text()
    assert "Two claims on one model" in table and "| reference | overwrite |" in table
    assert "prune_50+finetune_FTAL+distill_T4" in table
    assert not any("key" in name for _, dirs, files in os.walk(tmp_path) for name in dirs + files if name != "results.json")


def test_the_ingrain_key_and_its_references_are_ingrainers_of_the_configured_size(tmp_path):
    experiment = _Experiment(tiny_config(ingrainer_hidden_channels=[2, 4], ingrainer_hidden_size=8), str(tmp_path))
    key = experiment.key("reference")
    assert experiment.key("ingrain_lambda_0.5") is key  # one key for the reference and every ingrain row
    for ingrainer in [key.ingrainer] + key.reference_ingrainers:
        assert (ingrainer.config.hidden_channels, ingrainer.config.hidden_size) == ([2, 4], 8)
        assert ingrainer.conv1.out_channels == 2 and ingrainer.fc.out_features == 8
    assert len(key.reference_ingrainers) == 2


def test_config_rejects_unknown_names_and_yaml_fields(tmp_path):
    with pytest.raises(ValueError, match="Unknown schemes"):
        ExperimentConfig(schemes=["nope"])
    with pytest.raises(ValueError, match="Unknown attack 'melt'"):
        ExperimentConfig(attacks=["melt"])
    for name in ("extract_gan_10k", "extract_data_10k_embeddings", "distill_T4_bert", "ensemble_5"):
        with pytest.raises(ValueError, match=f"Unknown attack '{name}'.*extract_<source>_<N>k"):
            ExperimentConfig(attacks=[name])
    with pytest.raises(ValueError, match="Unknown attack 'melt'"):  # each link of a chain is checked
        ExperimentConfig(attacks=["prune_50+melt"])
    with pytest.raises(ValueError, match="at least 1k"):
        ExperimentConfig(attacks=["extract_noise_0k"])
    with pytest.raises(ValueError, match="two convolution blocks"):
        ExperimentConfig(ingrainer_hidden_channels=[8])
    with pytest.raises(ValueError, match="all >= 1"):
        ExperimentConfig(ingrainer_hidden_size=0)
    assert ExperimentConfig(attacks=["extract_mixup_3k_topk", "distill_T2_convnext+noise_0.1"]).attacks
    path = tmp_path / "config.yaml"
    path.write_text("epochs: 2\nepoch: 3\n")
    with pytest.raises(ValueError, match="unknown keys"):
        ExperimentConfig.from_yaml(str(path))
    path.write_text("epochs: 2\n")
    assert ExperimentConfig.from_yaml(str(path), dataset="some/id").dataset == "some/id"


def test_benchmark_cli_reports_a_bad_config_without_a_traceback(tmp_path, capsys):
    assert main(["benchmark", "--config", str(tmp_path / "missing.yaml"), "--output", str(tmp_path / "out")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["benchmark", "--seeds", "1", "1", "--output", str(tmp_path / "out")]) == 2
    assert "distinct seeds" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_results_markdown_marks_verified_cells():
    results = {
        "config": {"attacks": ["prune_50"], "verify_alpha": 1e-6, "dataset": "d"},
        "cells": [
            {"scheme": "s", "attack": "none", "test_accuracy": 0.9, "verified": True, "p_value": 1e-9, "score": 0.5},
            {"scheme": "s", "attack": "prune_50", "test_accuracy": 0.8, "verified": False, "p_value": 0.3, "score": 0.1},
        ],
        "date": "today", "machine": "m", "seconds": 1.0,
    }
    table = results_markdown(results)
    assert "| s | 0.900 | ✅ 0.50 (p=1e-09) | ❌ 0.10 (p=3e-01) |" in table
    json.dumps(results)


def test_a_run_with_another_config_is_refused_before_any_work(finished_run, tmp_path, monkeypatch):
    config = _copy_of(finished_run, tmp_path)
    monkeypatch.setattr(_Experiment, "__init__", lambda *a, **k: pytest.fail("started work"))
    with pytest.raises(ValueError, match=r"another config \(fields that differ: \['epochs'\]\)"):
        run_benchmark(tiny_config(schemes=[], attacks=["prune_50"], epochs=2), str(tmp_path), show_progress=False)
    # more rows or columns are a legitimate resume: the cells already there were computed under the same settings
    monkeypatch.undo()
    results = run_benchmark(tiny_config(schemes=[], attacks=["prune_50", "quantize_4bit"]), str(tmp_path), show_progress=False)
    assert {c["attack"] for c in results["cells"]} == {"none", "prune_50", "quantize_4bit"}
    # A run recorded before `ingrainer_batch_size` and the ingrainer's size existed trained its key at 256 images a
    # step with the package's default ingrainer (16 and 32 channels, 64 wide): it resumes with those only.
    path = tmp_path / "benchmark_config.json"
    recorded = json.loads(path.read_text())
    for name in ("ingrainer_batch_size", "ingrainer_hidden_channels", "ingrainer_hidden_size"):
        del recorded["cell_fields"][name]
    path.write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match=r"fields that differ: \['ingrainer_batch_size'\]"):
        run_benchmark(tiny_config(schemes=[], attacks=["prune_50"], ingrainer_batch_size=128), str(tmp_path))
    smaller = dict(ingrainer_hidden_channels=[8, 16], ingrainer_hidden_size=32)
    with pytest.raises(ValueError, match=r"differ: \['ingrainer_hidden_channels', 'ingrainer_hidden_size'\]"):
        run_benchmark(tiny_config(schemes=[], attacks=["prune_50"], **smaller), str(tmp_path))
    resumed = run_benchmark(tiny_config(schemes=[], attacks=["prune_50"]), str(tmp_path), show_progress=False)
    assert resumed["cells"]
    path.unlink()  # cells whose config is unknown
    with pytest.raises(ValueError, match="config is unknown"):
        run_benchmark(config, str(tmp_path), show_progress=False)


def test_an_underflowed_p_value_is_a_bound_in_the_table():
    results = {
        "config": {"attacks": [], "verify_alpha": 1e-6, "dataset": "d"},
        "cells": [{"scheme": "s", "attack": "none", "test_accuracy": 0.9, "verified": True, "p_value": 0.0, "score": 0.8}],
        "date": "today", "machine": "m", "seconds": 1.0,
    }
    assert "| s | 0.900 | ✅ 0.80 (p<1e-300) |" in results_markdown(results)


@pytest.mark.slow  # ~23 s: CI runs it; the default pytest stays within its 5 minutes
def test_a_run_over_seeds_summarises_each_cell_over_the_seeds_and_resumes(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="distinct seeds"):
        run_benchmark_seeds(tiny_config(), [3, 3], str(tmp_path))
    assert not os.listdir(tmp_path)  # refused before any folder is made
    config = tiny_config(schemes=[], attacks=["prune_50"])
    summary = run_benchmark_seeds(config, [0, 1], str(tmp_path), show_progress=False)
    runs = [json.loads((tmp_path / f"seed_{seed}" / "results.json").read_text()) for seed in (0, 1)]
    assert [run["config"]["seed"] for run in runs] == summary["seeds"] == [0, 1]
    assert runs[0]["key_commitments"] != runs[1]["key_commitments"]  # each seed draws its own keys
    assert [(c["scheme"], c["attack"]) for c in summary["cells"]] == [
        (s, a) for s in ("reference", "ingrain_lambda_0.5") for a in ("none", "prune_50")
    ]
    for cell in summary["cells"]:
        per_seed = [next(c for c in run["cells"] if (c["scheme"], c["attack"]) == (cell["scheme"], cell["attack"]))
                    for run in runs]
        assert cell["num_seeds"] == 2 and cell["num_verified"] == sum(c["verified"] for c in per_seed)
        assert cell["score"][0] == pytest.approx(sum(c["score"] for c in per_seed) / 2)
        assert cell["max_p_value"] == max(c["p_value"] for c in per_seed)
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    # the ingrain key on the reference and on the thief's own model, over both seeds
    assert [(c["key"], c["model"], c["num_seeds"]) for c in summary["false_claims"]] == [
        ("ingrain", "reference", 2), ("ingrain", "_thief_0", 2)
    ]
    for index, claim in enumerate(summary["false_claims"]):
        per_seed = [run["false_claims"][index] for run in runs]
        assert claim["min_p_value"] == min(c["p_value"] for c in per_seed)
        assert claim["num_verified"] == sum(c["verified"] for c in per_seed)
    assert "False claims" in (tmp_path / "summary.md").read_text()
    assert "| reference |" in (tmp_path / "summary.md").read_text() and os.path.getsize(tmp_path / "robustness.png") > 0
    # Every seed resumes: training or attacking again would fail here.
    monkeypatch.setattr(_Experiment, "train", lambda *a, **k: pytest.fail("retrained a saved model"))
    monkeypatch.setattr(_Experiment, "attack", lambda *a, **k: pytest.fail("re-ran a finished cell"))
    assert run_benchmark_seeds(config, [0, 1], str(tmp_path), show_progress=False)["cells"] == summary["cells"]


def test_the_summary_marks_cells_verified_for_some_seeds_and_the_accuracy_kept():
    def run(seed, verified, p_value, accuracy):
        return {
            "config": {"seed": seed, "num_proc": 1, "verify_alpha": 1e-6, "dataset": "d"},
            "cells": [
                {"scheme": "s", "attack": "none", "test_accuracy": 0.9, "verified": True, "p_value": 1e-9, "score": 0.6},
                {"scheme": "s", "attack": "a", "test_accuracy": accuracy, "verified": verified, "p_value": p_value,
                 "score": 0.2 if verified else 0.1},
            ],
            "date": "today", "machine": "m", "seconds": 1.0,
        }

    summary = summarize_seeds([run(0, True, 1e-8, 0.9), run(1, False, 3e-4, 0.72)])
    assert summary["kept_accuracy"] == pytest.approx({"none": 1.0, "a": 0.9})
    table = summary_markdown(summary)
    assert "| s | ✅ 2/2 0.60 ± 0.00 (p≤1e-09) | ◐ 1/2 0.15 ± 0.07 (p≤3e-04) |" in table
    assert "| s | 0.900 ± 0.000 | 0.810 ± 0.127 |" in table
    with pytest.raises(ValueError, match="differ in their seed only"):
        summarize_seeds([run(0, True, 1e-8, 0.9), {**run(1, True, 1e-8, 0.9), "config": {"seed": 1, "dataset": "e"}}])


def test_the_benchmark_command_reads_flags_and_yaml_like_the_recipes(tmp_path, capsys, monkeypatch):
    import hf_ingrain.benchmark

    seen = {}
    monkeypatch.setattr(hf_ingrain.benchmark, "run_benchmark", lambda config, output: seen.update(config=config, output=output) or {})
    monkeypatch.setattr(hf_ingrain.benchmark, "results_markdown", lambda results: "table")
    path = tmp_path / "config.yaml"
    path.write_text("epochs: 2\nattacks: [prune_50]\n")
    assert main(["benchmark", "--config", str(path), "--ingrain-lambdas", "0.5", "1.0", "--output", str(tmp_path / "o")]) == 0
    config = seen["config"]
    assert (config.epochs, config.attacks, config.ingrain_lambdas) == (2, ["prune_50"], [0.5, 1.0])
    assert seen["output"] == str(tmp_path / "o")
    capsys.readouterr()
    monkeypatch.setattr(hf_ingrain.benchmark, "run_benchmark_seeds",
                        lambda config, seeds, output: seen.update(seeds=seeds) or {})
    monkeypatch.setattr(hf_ingrain.benchmark, "summary_markdown", lambda summary: "summary")
    assert main(["benchmark", "--config", str(path), "--seeds", "0", "1", "2", "--output", str(tmp_path / "o")]) == 0
    assert seen["seeds"] == [0, 1, 2] and capsys.readouterr().out.startswith("summary")
    with pytest.warns(FutureWarning, match="ingrain_temperature"):
        assert ExperimentConfig(temperature=2.0).ingrain_temperature == 2.0


def test_the_demo_runs_the_default_grid_in_one_process_per_core(tmp_path, monkeypatch):
    import torch

    import hf_ingrain.benchmark
    from hf_ingrain.cli.demo import default_num_proc

    seen = []
    monkeypatch.setattr(hf_ingrain.benchmark, "run_benchmark", lambda config, output: seen.append(config) or {})
    monkeypatch.setattr(hf_ingrain.benchmark, "results_markdown", lambda results: "table")
    assert main(["demo", "--output", str(tmp_path)]) == 0
    assert main(["demo", "--output", str(tmp_path), "--num_proc", "3", "--seed", "2"]) == 0
    assert seen[0].num_proc == default_num_proc() == (1 if torch.cuda.is_available() else min(os.cpu_count(), 8))
    assert (seen[1].num_proc, seen[1].seed) == (3, 2)
    assert seen[0].cell_fields() == ExperimentConfig().cell_fields()  # the demo is the default grid
    assert main(["demo", "--output", str(tmp_path), "--num_proc", "0"]) != 0 and len(seen) == 2  # refused, not defaulted


@pytest.mark.parametrize(
    "path", sorted((ROOT / "recipes" / "benchmark_configs").glob("*.yaml")), ids=lambda path: path.name
)
def test_every_benchmark_config_parses(path):
    config = ExperimentConfig.from_yaml(str(path), dataset="some/local_copy")
    assert config.attacks and config.dataset == "some/local_copy"
