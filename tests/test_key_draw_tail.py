"""The key-draw tail measurement (`docs/key_draw_tail/key_draw_tail.py`), its plumbing on a tiny configuration: every
(model, pool member) pair is tested once against references drawn from the rest of the pool, the rates are counted
from the pairs, and the JSON, the plot and the summary are written. The numbers mean nothing at this size (4 barely
trained ingrainers, 2 models, 150 queries); the measurement is on docs/key_draw_tail/README.md."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from scipy import stats

from hf_ingrain.verification.statistics import key_draw_p_value, score_correlations, score_p_value

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "key_draw_tail" / "key_draw_tail.py"


def _script():
    spec = importlib.util.spec_from_file_location("key_draw_tail", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tail_measurement_writes_every_pair_and_rates_that_count_them(tmp_path):
    script = _script()
    arguments = ["--num_ingrainers", "4", "--ingrainer_steps", "10", "--num_references", "3", "--models", "cnn_s0",
                 "cnn_narrow_s0", "--epochs", "0.2", "--num_queries", "150", "--alphas", "0.5", "0.1", "0.001"]
    result = script.main([*arguments, "--output_dir", str(tmp_path)])
    summary, pairs = result["summary"], result["pairs"]
    written = json.loads((tmp_path / "key_draw_tail.json").read_text())
    assert written["summary"]["rates"] == json.loads(json.dumps(summary["rates"]))
    assert [(row["model"], row["ingrainer"], row["references"]) for row in written["pairs"]] == [
        (row["model"], row["ingrainer"], row["references"]) for row in pairs
    ]
    assert [row["p_value_key_draw"] for row in written["pairs"]] == pytest.approx(
        [row["p_value_key_draw"] for row in pairs], rel=1e-5
    )
    assert (tmp_path / "key_draw_tail.png").stat().st_size > 10_000
    assert "| 0.001 | key-draw |" in (tmp_path / "key_draw_tail.md").read_text()

    # every model against every member, as the key, once; its references are 3 other members
    assert summary["pairs"] == len(pairs) == 2 * 4
    assert {(row["model"], row["ingrainer"]) for row in pairs} == {(m, k) for m in ("cnn_s0", "cnn_narrow_s0")
                                                                     for k in range(4)}
    agreement = {(row["model"], row["ingrainer"]): row["agreement"] for row in pairs}
    for row in pairs:
        assert len(row["references"]) == 3 and row["ingrainer"] not in row["references"]
        assert row["num_queries"] == 150
        # the references' agreements are those members' own agreements with the same model, and the p-value is the
        # package's key-draw test of them
        assert row["reference_agreements"] == pytest.approx([agreement[row["model"], k] for k in row["references"]])
        p_value, numbers = key_draw_p_value(row["agreement"], row["reference_agreements"], row["num_queries"])
        assert (row["p_value_key_draw"], row["t"]) == pytest.approx((p_value, numbers["t"]))
        assert row["p_value"] >= row["p_value_key_draw"]  # verify's p-value: the larger of the two tests'

    # the rates count the pairs, with exact intervals around them
    for rate in summary["rates"]:
        column = "p_value_key_draw" if rate["test"] == "key-draw" else "p_value"
        assert rate["claims"] == sum(row[column] <= rate["alpha"] for row in pairs)
        assert rate["rate"] == rate["claims"] / len(pairs) and rate["expected"] == rate["alpha"] * len(pairs)
        interval = stats.binomtest(rate["claims"], len(pairs)).proportion_ci(method="exact")
        assert (rate["ci_low"], rate["ci_high"]) == pytest.approx((interval.low, interval.high))
    beyond = {entry["threshold"]: entry["observed"] for entry in summary["tail"]["t_beyond"]}
    assert beyond[2.0] == sum(row["t"] > 2.0 for row in pairs)

    # the analysis again from the saved scores, training nothing: the same pairs
    again = script.main([*arguments, "--scores_file", str(tmp_path / "scores.pt"), "--output_dir", str(tmp_path / "b")])
    assert again["pairs"] == pairs

    # the same pairs judged by the scores protocol: the package's correlations and key-draw test, as verify runs them
    scores = script.main([*arguments, "--scores_file", str(tmp_path / "scores.pt"), "--statistic", "scores",
                          "--output_dir", str(tmp_path / "c")])
    saved = torch.load(tmp_path / "scores.pt", weights_only=False)
    for row in scores["pairs"]:
        pool, model = saved["pool"], saved["models"][row["model"]]
        correlations = score_correlations(model, pool[row["ingrainer"]], pool[row["references"]])
        assert row["agreement"] == pytest.approx(correlations[0]) and row["p_value"] == row["p_value_key_draw"]
        assert row["p_value"] == pytest.approx(score_p_value(correlations, row["num_queries"])[0])
    assert len(scores["summary"]["copy_t"]) == 4
    assert "scores (verify)" in (tmp_path / "c" / "key_draw_tail.md").read_text()
    with pytest.raises(ValueError, match="statistic"):
        script.main([*arguments, "--statistic", "agreement", "--output_dir", str(tmp_path / "d")])


def test_the_references_are_drawn_from_the_rest_of_the_pool_and_the_counts_checked():
    script = _script()
    draws = script.reference_draws(64, 16, seed=0)
    assert draws == script.reference_draws(64, 16, seed=0) and draws != script.reference_draws(64, 16, seed=1)
    assert all(len(set(refs)) == 16 and member not in refs for member, refs in enumerate(draws))
    with pytest.raises(ValueError, match="num_references"):
        script.reference_draws(4, 4, seed=0)
