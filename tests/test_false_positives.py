"""False positives, measured: models trained without the key must never verify at the default alpha.

Ten independently trained models (their own init seeds, their own data splits, two widths) and degenerate models
built to sit on the null rate are verified under every protocol and access path; the p-values are printed (run with
`-s` to see them). The ingrained model verifies on the same queries, so the test has the power to say "verified".
"""

import pytest
import torch
from trained_models import (  # noqa: F401 (single_thread: autouse)
    NUM_INDEPENDENT,
    accuracy,
    independent_model,
    ingrained_model,
    single_thread,
    splits,
    trained_key,
)

from hf_ingrain import verify
from hf_ingrain.verification.calibration import calibrate_null
from hf_ingrain.verification import DEFAULT_ALPHA, ingrain_statistics

PROTOCOLS = {
    "ingrain": dict(),
    "ingrain, unlabelled": dict(unlabelled=True),
    "ingrain, top-2": dict(scores="top_k", top_k=2),
    "carriers": dict(protocol="carriers"),
    "carriers, labels only": dict(protocol="carriers", scores="labels"),
    "labels, occlusion": dict(protocol="ingrain_labels"),
    "labels, noise": dict(protocol="ingrain_labels", ladder="noise"),
    "labels, errors": dict(protocol="ingrain_errors"),
}


def run(model, key, test, unlabelled=False, **kwargs):
    return verify(model, key, test.remove_columns("labels") if unlabelled else test, **kwargs)


@pytest.fixture(scope="module")
def setting():
    return trained_key(), splits()["test"], ingrained_model()


@pytest.mark.slow
def test_independent_models_never_verify_under_any_protocol(setting):
    key, test, ingrained = setting
    models = {f"independent {i}": independent_model(i) for i in range(NUM_INDEPENDENT)}
    calibration = calibrate_null(key, test, models)  # the "ingrain" protocol, as an owner would measure it
    print(f"\n{calibration}\n\np-values:\n{'model':<16} {'accuracy':>8}  " + "  ".join(f"{p:>21}" for p in PROTOCOLS))
    for name, model in models.items():
        # they are reasonable classifiers, i.e. real null models, not noise
        assert accuracy(model, test) >= 0.85, name
        results = {"ingrain": calibration.results[name]}
        results.update({protocol: run(model, key, test, **kwargs) for protocol, kwargs in PROTOCOLS.items() if kwargs})
        print(
            f"{name:<16} {accuracy(model, test):>8.3f}  " + "  ".join(f"{r.p_value:>21.3g}" for r in results.values())
        )
        for protocol, result in results.items():
            assert not result.verified, (name, protocol, result)
    assert not calibration.any_verified and calibration.max_excess < 0
    # the owner's ingrained model verifies on the same queries: the test can say "verified"
    positive = run(ingrained, key, test)
    label_only = {name: run(ingrained, key, test, **kwargs) for name, kwargs in PROTOCOLS.items() if "labels," in name}
    print(f"{'ingrained':<16} {accuracy(ingrained, test):>8.3f}  {positive.p_value:>21.3g}  (labels only: "
          + ", ".join(f"{name} {r.p_value:.3g}" for name, r in label_only.items()) + ")")
    assert positive.verified and positive.p_value < DEFAULT_ALPHA


@pytest.mark.slow
def test_degenerate_models_sitting_on_the_bound_do_not_verify(setting):
    key, test, _ = setting
    base = independent_model(0)
    per_query = ingrain_statistics(base, key, test)
    top, choices, labels = per_query["top"], per_query["ingrainer_choice"], per_query["labels"]
    favourite = int(torch.bincount(choices).argmax())  # the ingrainer's most frequent choice on these queries

    def best_by(groups):  # the runner-up rule of the class that agrees best with the ingrainer (it knows the key!)
        table = {int(g): int(torch.bincount(choices[groups == g]).argmax()) for g in groups.unique()}
        return torch.tensor([table[int(g)] for g in groups])

    forced = {
        "constant runner-up": torch.where(top == favourite, (favourite + 1) % key.num_labels, favourite),
        "best rule by top class": best_by(top),
        "best rule by label": torch.where(best_by(labels) == top, (top + 1) % key.num_labels, best_by(labels)),
    }
    index_of = {image.numpy().tobytes(): i for i, image in enumerate(test[:]["pixel_values"])}
    for name, runner_ups in forced.items():

        def forced_model(batch, runner_ups=runner_ups):  # the base model's top class, then a forced second class
            logits = base(pixel_values=batch["pixel_values"]).logits.detach()
            second = runner_ups[[index_of[image.numpy().tobytes()] for image in batch["pixel_values"]]]
            return logits.scatter(-1, second.unsqueeze(-1), logits.max(-1, keepdim=True).values - 1e-3)

        result = verify(forced_model, key, test)
        print(
            f"{name}: agreement {result.agreement:.3f} vs null rate {result.null_rate:.3f}, p = {result.p_value:.3g}"
        )
        assert result.details["accuracy"] == pytest.approx(per_query["top"].eq(labels).float().mean().item())
        assert result.agreement > 1 / (key.num_labels - 1)  # the uniform rate alone would not have held
        assert not result.verified, name


def test_the_false_positive_table_is_verify_on_every_pair(small_key, embedded_splits):
    from conftest import tiny_cnn

    from hf_ingrain.verification.calibration import false_positive_table
    from hf_ingrain.suspects import collect_scores

    queries = embedded_splits["test"].select(range(200))
    models = {"a": tiny_cnn(seed=1), "ingrainer": small_key.ingrainer}
    scores = {name: collect_scores(model, queries)[0] for name, model in models.items()}
    labels = collect_scores(models["a"], queries)[1]
    table = false_positive_table(
        scores, {"key": collect_scores(small_key.ingrainer, queries)[0]}, labels, [50, 200], derived=[("ingrainer", "key")]
    )
    for row in table["pairs"]:
        expected = verify(models[row["model"]], small_key, queries.select(range(row["num_queries"])))
        assert (row["agreement"], row["null_rate"], row["p_value"]) == pytest.approx(
            (expected.agreement, expected.null_rate, expected.p_value)
        ), row
    summary = {row["num_queries"]: row for row in table["summary"]}
    assert summary[200]["independent_pairs"] == 1 and summary[200]["derived_verified"] == 1  # the ingrainer: power
    assert summary[200]["false_claims"] == 0


@pytest.mark.slow
def test_the_false_positive_recipe_runs_and_finds_no_false_claim(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "false_positives" / "false_positives.py"
    spec = importlib.util.spec_from_file_location("false_positives", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    table = recipe.main([
        "--dataset", "mnist-5k", "--num_keys", "2", "--query_counts", "100", "1000", "--epochs", "2",
        "--ingrainer_steps", "100", "--num_reference_keys", "8", "--output_dir", str(tmp_path),
    ])  # 8 reference ingrainers per key (16 by default): the key-draw test runs, at half the cost
    print(capsys.readouterr().out)
    assert [row["num_queries"] for row in table["summary"]] == [100, 1000]
    # 2 keys x (19 independent models, 2 ensembles, the model ingrained with the other key)
    assert all(row["independent_pairs"] == 2 * 22 and row["derived_pairs"] == 2 for row in table["summary"])
    assert all(row["false_claims"] == 0 for row in table["summary"]), table["summary"]
    assert (tmp_path / "false_positives.md").read_text().count("|") > 20
